"""Registry: names, errors, parameters, pickling, import paths, register_reward, and the modules' doctests."""
from __future__ import annotations

import doctest
import importlib
import pickle

import pytest

import rewards
from rewards import REWARDS, get_reward, register_reward
from rewards.scoring.registry import _REGISTRY

BUILTINS = ["accuracy", "format", "tag_count", "reasoning_steps", "cosine", "repetition", "soft_overlong", "countdown", "code",
            "language_consistency", "boxed_format"]


def test_rewards_lists_the_builtins():
    assert REWARDS[:len(BUILTINS)] == BUILTINS


@pytest.mark.parametrize("name", BUILTINS)
def test_builtins_have_their_name_and_pickle(name):
    fn = get_reward(name)
    assert fn.__name__ == name  # TRL logs rewards/<__name__>/mean
    again = pickle.loads(pickle.dumps(fn))
    assert again.__name__ == name and again.params == fn.params


def test_unknown_name_lists_valid_ones():
    with pytest.raises(ValueError) as e:
        get_reward("acuracy")
    msg = str(e.value)
    assert "'acuracy'" in msg and all(n in msg for n in BUILTINS) and "\n" not in msg


def test_bad_import_path():
    with pytest.raises(ValueError, match="unknown reward 'no_such_module:fn'.*import failed.*accuracy"):
        get_reward("no_such_module:fn")
    with pytest.raises(ValueError, match="reward_test_helpers:nope"):
        get_reward("reward_test_helpers:nope")


def test_unknown_param_names_reward_and_param():
    with pytest.raises(ValueError, match="reward 'format': unknown parameter 'strict'"):
        get_reward("format", strict=True)


def test_import_path_plain_function_with_params():
    fn = get_reward("reward_test_helpers:scaled_length", scale=2.0)
    assert fn.__name__ == "scaled_length"
    assert fn(["abc", [{"role": "assistant", "content": "ab"}]]) == [6.0, 4.0]
    with pytest.raises(ValueError, match="scaled_length.*unknown parameter 'factor'"):
        get_reward("reward_test_helpers:scaled_length", factor=2.0)
    assert pickle.loads(pickle.dumps(fn))(["a"]) == [2.0]


def test_import_path_factory():
    assert get_reward("reward_test_helpers:make_constant", value=0.5)(["a", "b"]) == [0.5, 0.5]
    with pytest.raises(ValueError, match="constant.*value"):
        get_reward("reward_test_helpers:make_constant", value=-1)


def test_register_reward_decorator():
    try:
        @register_reward("test_exclaim")
        def exclaim(completions, bonus: float = 1.0, **kwargs):
            return [bonus if "!" in c else 0.0 for c in completions]

        @register_reward("test_const", factory=True, cheap=True)
        def make_const(value: float = 1.0):
            def const(completions, **kwargs):
                return [value] * len(completions)
            return const

        assert "test_exclaim" in REWARDS and "test_const" in REWARDS
        assert get_reward("test_exclaim", bonus=2.0)(["hi!", "hi"]) == [2.0, 0.0]
        assert get_reward("test_const", value=3.0)(["x"]) == [3.0]
        assert get_reward("test_const").cheap and not get_reward("test_exclaim").cheap
        with pytest.raises(ValueError, match="already registered"):
            register_reward("accuracy")(exclaim)
        with pytest.raises(ValueError, match="name"):
            register_reward("a:b")
    finally:
        for name in ("test_exclaim", "test_const"):
            _REGISTRY.pop(name, None)
            if name in REWARDS:
                REWARDS.remove(name)


MODULES = ["rewards", "rewards.scoring.registry", "rewards.extract", "rewards.scoring.deadline", "rewards.math.accuracy",
           "rewards.form.format", "rewards.form.length", "rewards.form.repetition", "rewards.math.countdown", "rewards.scoring.scorer",
           "rewards.scoring.pool", "rewards.math.normalize"]


@pytest.mark.parametrize("module", MODULES)
def test_docstring_examples(module):
    result = doctest.testmod(importlib.import_module(module), optionflags=doctest.ELLIPSIS)
    assert result.failed == 0


def test_no_heavy_imports():
    src = "".join(open(importlib.import_module(m).__file__).read() for m in MODULES)
    for heavy in ("vllm", "wandb", "accelerate", "torch"):
        assert f"import {heavy}" not in src and f"from {heavy}" not in src
    assert rewards.__all__


SHORT_ANSWER = "def short_answer(completions, limit: int = 5, **columns):\n" \
               "    return [1.0 if len(c) < limit else 0.0 for c in completions]\n"


@pytest.mark.parametrize("written", ["my_rewards.py:short_answer", "sub/my_rewards.py:short_answer", "ABS"])
def test_reward_named_by_file_path(tmp_path, monkeypatch, written):
    # the file lives in tmp_path/sub; the run starts in tmp_path (or anywhere, for the absolute path)
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "my_rewards.py").write_text(SHORT_ANSWER)
    monkeypatch.chdir(tmp_path / "sub" if written.startswith("my_rewards") else tmp_path)
    name = f"{tmp_path}/sub/my_rewards.py:short_answer" if written == "ABS" else written
    fn = get_reward(name, limit=3)
    assert fn.__name__ == "short_answer" and fn(["ab", "abcd"]) == [1.0, 0.0]  # "ab" is under 3 chars, "abcd" not
    # workers rebuild it by the file's absolute path, from any working directory
    assert fn.entry.importable and fn.entry.ref == f"{tmp_path}/sub/my_rewards.py:short_answer"
    code = "import pickle, sys; print(pickle.loads(sys.stdin.buffer.read())(['a', 'abcdef']))"
    import subprocess
    import sys
    out = subprocess.run([sys.executable, "-c", code], input=pickle.dumps(fn), capture_output=True, cwd="/",
                         env={"PYTHONPATH": str(importlib.import_module("rewards").__path__[0].rsplit("/", 1)[0])})
    assert out.stdout.decode().strip() == "[1.0, 0.0]", out.stderr.decode()[-500:]


def test_reward_import_errors_say_where_they_looked(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ValueError) as e:
        get_reward("my_rewards:short_answer")  # a module that is not on sys.path (it lives in another folder)
    msg = str(e.value)
    assert "No module named 'my_rewards'" in msg and "looked for module 'my_rewards' in sys.path (" in msg
    assert "'path/to/my_rewards.py:function'" in msg and "\n" not in msg
    with pytest.raises(ValueError) as e:
        get_reward("lib/my_rewards.py:short_answer")
    assert str(e.value) == (f"reward 'lib/my_rewards.py:short_answer': no file {tmp_path}/lib/my_rewards.py "
                            f"(lib/my_rewards.py relative to the working directory {tmp_path})")
    (tmp_path / "r.py").write_text(SHORT_ANSWER)
    with pytest.raises(ValueError, match=r"unknown reward 'r.py:long_answer' \(import failed: AttributeError"):
        get_reward("r.py:long_answer")


@pytest.mark.parametrize("override, expected", [
    ("rewards.lib/mine.py:short=0.2", {"lib/mine.py:short": 0.2}),
    ("rewards.lib/mine.py:short.limit=3", {"lib/mine.py:short": {"weight": 1.0, "limit": 3}}),
    ("rewards.my_pkg.mine:short.weight=0.5", {"my_pkg.mine:short": {"weight": 0.5}}),
])
def test_overrides_keep_the_dots_of_a_reward_path(override, expected):
    from rl.config.recipe import _set_path, parse_override
    tree = {"rewards": {"lib/mine.py:short": {"weight": 1.0}}} if "limit" in override else {"rewards": {}}
    _set_path(tree, *parse_override(override))
    assert tree["rewards"] == expected
