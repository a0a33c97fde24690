"""Tools of multi-turn episodes: parsing calls (tables of text -> calls), schemas, limits, and the sandboxed python
tool (state across the calls of an episode, timeouts, hostile code as error observations)."""
import pytest

from rl.rollout.episodes.environments import ToolEnvironment, ToolLimits, TRLEnvironment
from rl.rollout.episodes.tools import (FunctionTool, PythonTool, SandboxPool, ToolCall, load_tools, parse_hermes,
                                       parse_torl, torl_observation, truncate_observation)
from tests.rollout.episodes.tools_fixtures import explode, hang, multiply

MOD = "tests.rollout.episodes.tools_fixtures"


@pytest.mark.parametrize("text, calls, errors", [
    ('<tool_call>\n{"name": "f", "arguments": {"x": 1}}\n</tool_call>', [ToolCall("f", {"x": 1})], 0),
    # two calls in one turn, text around them
    ('a<tool_call>{"name": "f", "arguments": {}}</tool_call>b<tool_call>{"name": "g", "arguments": {"y": "z"}}'
     '</tool_call>', [ToolCall("f", {}), ToolCall("g", {"y": "z"})], 0),
    # arguments written as a JSON string are read
    ('<tool_call>{"name": "f", "arguments": "{\\"x\\": 2}"}</tool_call>', [ToolCall("f", {"x": 2})], 0),
    # missing arguments: {}
    ('<tool_call>{"name": "f"}</tool_call>', [ToolCall("f", {})], 0),
    ('<tool_call>{"name": "f", "arguments": 3}</tool_call>', [], 1),  # arguments not an object
    ('<tool_call>{name: f}</tool_call>', [], 1),  # not JSON
    ('<tool_call>["f"]</tool_call>', [], 1),  # no name
    ('<tool_call>{"name": "f", "arguments": {}}', [], 1),  # unterminated
    ("The answer is 4.", [], 0),  # no call: the final answer
])
def test_parse_hermes(text, calls, errors):
    parsed = parse_hermes(text)
    assert parsed.calls == calls
    assert len(parsed.errors) == errors
    assert parsed.wants_tools == bool(calls or errors)


def test_parse_hermes_keeps_the_order_of_calls_and_errors():
    good = '<tool_call>{"name": "f", "arguments": {}}</tool_call>'
    parsed = parse_hermes(good + '<tool_call>{"name": "f", "arguments": 1}</tool_call>' + good)
    assert [type(x).__name__ for x in parsed.items] == ["ToolCall", "str", "ToolCall"]  # answers line up with calls


def test_parse_hermes_caps_calls_per_turn():
    text = '<tool_call>{"name": "f", "arguments": {}}</tool_call>' * 3
    parsed = parse_hermes(text, max_calls=2)  # 2 calls kept, the third is an error
    assert len(parsed.calls) == 2 and parsed.errors == ["too many tool calls in one turn (at most 2)"]


@pytest.mark.parametrize("text, code, errors", [
    ("Let me compute.\n```python\nprint(3 * 4)\n```\n```output", "print(3 * 4)", 0),
    # the LAST python block before ```output is the call
    ("```python\nx = 1\n```\ntext\n```py\nprint(x)\n```\n```output\n", "print(x)", 0),
    ("```output", None, 1),  # nothing to run
    ("```python\nprint(1)\n```\nThe answer is 1.", None, 0),  # no ```output at the end: final answer
])
def test_parse_torl(text, code, errors):
    parsed = parse_torl(text)
    assert [c.arguments["code"] for c in parsed.calls] == ([code] if code else [])
    assert len(parsed.errors) == errors


@pytest.mark.parametrize("text, cap, expected, cut", [
    ("abcdefghij", 4, "ab\n...[6 characters truncated]...\nij", True),  # 2 head + 2 tail kept, 10 - 4 = 6 out
    ("abcdefghij", 5, "abc\n...[5 characters truncated]...\nij", True),  # head 5 - 5 // 2 = 3, tail 2
    ("abc", 4, "abc", False),
])
def test_truncate_observation(text, cap, expected, cut):
    assert truncate_observation(text, cap) == (expected, cut)


def test_torl_observation_closes_the_fence():
    assert torl_observation("12\n") == "\n12\n```\n"


def test_function_schema_and_failures_become_error_observations():
    tool = FunctionTool(multiply)
    assert tool.schema["function"]["name"] == "multiply"
    assert tool.schema["function"]["parameters"]["required"] == ["a", "b"]
    assert tool.call({"a": 123, "b": 456}, {}).text == "56088"
    bad = tool.call({"a": 1}, {})  # a required argument missing
    assert bad.error and "required (a, b)" in bad.text
    assert tool.call({"a": 1, "b": 2, "c": 3}, {}).error  # an unknown argument
    boom = FunctionTool(explode).call({"x": 1}, {})
    assert boom.error and boom.text == "error: RuntimeError: boom"
    slow = FunctionTool(hang, timeout_s=0.2).call({"seconds": 5}, {})
    assert slow.error and slow.timed_out and "timed out after 0.2 s" in slow.text


def test_load_tools_by_recipe_name():
    (tool,) = load_tools([f"{MOD}:multiply"])
    assert tool.name == "multiply"
    for spec, message in [(f"{MOD}:nothing", "cannot load"), ("multiply", "neither `python`"),
                          (f"{MOD}:undocumented", "undocumented"), ("python", "needs a sandbox pool"),
                          (f"{MOD}:multiply,{MOD}:multiply", "cannot load")]:
        with pytest.raises(ValueError, match=message):
            load_tools([spec])
    with pytest.raises(ValueError, match="duplicate"):
        load_tools([f"{MOD}:multiply", f"{MOD}:multiply"])


def test_tool_environment_limits_and_errors():
    env = ToolEnvironment([FunctionTool(multiply)], limits=ToolLimits(max_tool_calls=2, max_observation_chars=20))
    env.reset({})
    call = '<tool_call>{"name": "multiply", "arguments": {"a": 1000, "b": 1000}}</tool_call>'
    r = env.step(call + '<tool_call>{"name": "nope", "arguments": {}}</tool_call>')
    # "1000000" (7 chars) fits in 20; the unknown tool's error (43 chars) is cut to its first 10 and last 10
    # characters ("; tools: multiply" is 17); it uses up the second call of the episode
    assert r.messages[0] == {"role": "tool", "content": "1000000", "name": "multiply"} and not r.done
    assert r.messages[1]["content"] == "error: unk\n...[23 characters truncated]...\n: multiply"
    assert r.info == {"tool_calls": 2, "tool_errors": 1, "tool_format_errors": 0, "tool_timeouts": 0,
                      "tool_seconds": pytest.approx(r.info["tool_seconds"]), "observations_truncated": 1}
    r = env.step('<tool_call>{"name": "multiply"</tool_call>')  # malformed: a format error, counted apart
    assert (r.info["tool_format_errors"], r.info["tool_errors"], r.info["tool_calls"]) == (1, 1, 0)
    r = env.step(call)  # the limit (2 calls per episode) is reached: an error answer, the episode goes on
    assert r.messages[0]["content"].startswith("error: too") and r.info["tool_errors"] == 1 and not r.done
    assert env.step("It is 1000000.").done  # a turn without a call ends the episode


def test_trl_environment_adapter():
    class Counter:  # TRL's environment_factory shape: reset(**row), public methods are tools, get_reward()
        def reset(self, **row):
            self.n = row["start"]
            return f" Start at {self.n}."

        def increment(self, by: int) -> int:
            """Add to the counter.

            Args:
                by: how much to add
            """
            self.n += by
            return self.n

        def get_reward(self) -> float:
            return float(self.n == 5)

    env = TRLEnvironment(Counter())
    assert [t["function"]["name"] for t in env.tools] == ["increment"]
    assert env.reset({"start": 2}) == " Start at 2."
    r = env.step('<tool_call>{"name": "increment", "arguments": {"by": 3}}</tool_call>')
    assert r.messages == [{"role": "tool", "content": "5", "name": "increment"}] and r.reward is None
    r = env.step("Done: 5")
    assert r.done and r.reward == 1.0


@pytest.fixture(scope="module")
def pool():
    p = SandboxPool(size=2)
    yield p
    p.close()


def test_python_tool_keeps_state_per_episode_or_runs_fresh(pool):
    stateful, fresh = PythonTool(pool, stateful=True), PythonTool(pool, stateful=False)
    episode = {}
    assert stateful.call({"code": "x = 6 * 7\nprint(x)"}, episode).text == "42\n"
    assert stateful.call({"code": "x + 1"}, episode).text == "43\n"  # a final expression is shown, as a REPL does
    other = {}
    assert "NameError" in stateful.call({"code": "x"}, other).text  # another episode: its own state
    assert "NameError" in fresh.call({"code": "x"}, episode).text  # fresh per call


def test_python_tool_hostile_code_is_an_error_observation(pool):
    tool = PythonTool(pool, stateful=False, timeout_s=1.0)
    hung = tool.call({"code": "while True: pass"}, {})
    assert hung.error and hung.timed_out and "longer than 1 s" in hung.text
    files = tool.call({"code": "open('/etc/passwd').read()"}, {})
    assert files.error and "FileNotFoundError" in files.text  # no host filesystem in the sandbox
    memory = tool.call({"code": "x = bytearray(4 << 30)"}, {})  # over the sandbox's address-space limit
    assert memory.error and "MemoryError" in memory.text
    flood = tool.call({"code": "print('x' * (4 << 20))"}, {})  # 4 MB of output, over the 1 MB cap
    assert flood.error and "output was too long" in flood.text and len(flood.text) <= (1 << 20) + 100
    forks = tool.call({"code": "import os\nfor _ in range(100):\n    os.fork() or os._exit(0)"}, {})
    assert forks.error and "BlockingIOError" in forks.text  # over the sandbox's process limit
    assert tool.call({"code": 5}, {}).error  # arguments of the wrong type
    assert tool.call({"code": "print(2 ** 10)"}, {}).text == "1024\n"  # and the pool still works
