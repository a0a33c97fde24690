"""The tree's import rules, checked from the source (every import statement, including those inside functions).

    rl.core      the pure GRPO math: imports only rl.core (no machinery, rollouts, recipes, rewards or libraries
                 that launch, track or serve)
    rl.config    recipe schemas: rl.core and rl.config only
    rl.train     machinery: never rl.rollout, rl.tiny (named models reach the loader as sources) or a stage
    rl.rollout   never a stage; rl.rollout.engines (the only package that imports vllm) never imports
                 rl.rollout.episodes or rewards
    rewards, data  stand alone: never import rl; rewards.scoring (the machinery) never imports a reward family
                 (rewards.math, rewards.code, rewards.form)
    sandbox      stands alone: imports no other package of the project
    stages       rl/{grpo,sft,distill,export,evaluate,pipeline}.py: imported only by the pipeline (rl/pipeline.py and
                 its R1 stages 3-4, rl/pipeline_late.py), by distill (its
                 student step is the SFT stage) and by rl.bench (which runs the GRPO stage as a user would)
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
STAGES = {f"rl.{s}" for s in ("grpo", "sft", "distill", "export", "evaluate", "pipeline")}
STAGE_IMPORTERS = {"rl.pipeline", "rl.pipeline_late", "rl.distill", "rl.bench"}
SERVING = ("vllm", "accelerate", "deepspeed", "wandb", "trackio", "trl", "peft")


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path) -> set[str]:
    """Absolute module names imported anywhere in the file (`from a.b import c` gives a.b and a.b.c)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
            names.update(f"{node.module}.{a.name}" for a in node.names)
    return names


def under(name: str, package: str) -> bool:
    return name == package or name.startswith(package + ".")


def violations(module: str, imported: set[str]) -> list[str]:
    out = []
    for name in sorted(imported):
        if under(module, "rl.core") and ((under(name, "rl") and not under(name, "rl.core"))
                                          or any(under(name, p) for p in SERVING + ("rewards", "data"))):
            out.append(f"{module} (pure core) imports {name}")
        if under(module, "rl.config") and under(name, "rl") and not (under(name, "rl.core") or under(name, "rl.config")):
            out.append(f"{module} (recipe schema) imports {name}")
        if under(module, "rl.train") and under(name, "rl.rollout"):
            out.append(f"{module} (machinery) imports rollouts: {name}")
        if under(module, "rl.train") and under(name, "rl.tiny"):
            out.append(f"{module} (machinery) imports the tiny world: {name}")
        if under(module, "rl.rollout.engines") and (under(name, "rl.rollout.episodes") or under(name, "rewards")):
            out.append(f"{module} (engine) imports episodes or rewards: {name}")
        if name in STAGES and module != name and not any(under(module, p) for p in STAGE_IMPORTERS):
            out.append(f"{module} imports the stage {name}")
        if under(name, "vllm") and not under(module, "rl.rollout.engines"):
            out.append(f"{module} imports vllm outside rl.rollout.engines")
        if (under(module, "rewards") or under(module, "data")) and under(name, "rl"):
            out.append(f"{module} (stands alone) imports {name}")
        if under(module, "rewards.scoring") and any(under(name, f"rewards.{f}") for f in ("math", "code", "form")):
            out.append(f"{module} (scoring machinery) imports a reward family: {name}")
        if under(module, "sandbox") and any(under(name, p) for p in ("rl", "rewards", "data")):
            out.append(f"{module} (stands alone) imports {name}")
    return out


SOURCES = sorted(p for d in ("rl", "rewards", "data", "sandbox") for p in (ROOT / d).rglob("*.py"))


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(ROOT)))
def test_import_rules(path):
    assert violations(module_name(path), imports(path)) == []


@pytest.mark.parametrize("module, imported, expected", [
    ("rl.core.losses", {"torch"}, 0),
    ("rl.core.losses", {"rl.train.learner"}, 1),          # core must not reach into the machinery
    ("rl.core.losses", {"accelerate"}, 1),
    ("rl.config.grpo", {"rl.core.advantages"}, 0),
    ("rl.config.grpo", {"rl.train.models"}, 1),
    ("rl.train.learner", {"rl.rollout.episodes.collect"}, 1),
    ("rl.rollout.episodes.collect", {"rl.evaluate"}, 1),           # nothing imports a stage ...
    ("rl.pipeline", {"rl.evaluate"}, 0),                  # ... but the pipeline
    ("rl.train.policy", {"vllm"}, 1),
    ("rewards.form.format", {"rl.core.episode"}, 1),
    ("rl.train.models", {"rl.tiny.build"}, 1),            # the loader is given named models, never imports them
    ("rl.tiny.sources", {"rl.train.models"}, 0),
    ("rl.rollout.engines.worker", {"rl.rollout.episodes.collect"}, 1),   # engines sit below episodes
    ("rl.rollout.episodes.collect", {"rl.rollout.engines.hf"}, 0),
    ("rl.rollout.engines.vllm", {"vllm"}, 0),
    ("rl.rollout.episodes.collect", {"vllm"}, 1),
    ("rewards.scoring.scorer", {"rewards.math.accuracy"}, 1),
    ("rewards.code.execution", {"sandbox.warm"}, 0),
    ("sandbox.warm", {"rewards.code.harness"}, 1),        # the sandbox runs any harness it is given
])
def test_rules_catch_violations(module, imported, expected):
    assert len(violations(module, imported)) == expected


def test_every_package_has_its_rules_written_down():
    for pkg in ("rl/core", "rl/train", "rl/rollout", "rl/rollout/engines", "rl/rollout/episodes", "rl/config"):
        doc = ast.get_docstring(ast.parse((ROOT / pkg / "__init__.py").read_text()))
        assert doc and "Imports:" in doc, f"{pkg}/__init__.py must say what it may import"


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(ROOT)))
def test_modules_stay_small(path):
    """A module over 400 lines is asking to be split (DEVELOPERS.md); the tree is easier to read in small rooms."""
    assert len(path.read_text().splitlines()) <= 400


def test_every_package_is_in_the_wheel():
    """pyproject.toml lists its packages by name (setuptools does not look for them): a package left out is missing
    from a non-editable `pip install .` and from a wheel, while an editable install (make setup) still finds it, so
    only this test sees it. Seen: rewards.models, rl.rollout.episodes.tools and .environments were missing."""
    import re
    listed = set(re.findall(r'"([\w.]+)"', re.search(r"^packages = \[(.*?)\]", (ROOT / "pyproject.toml").read_text(),
                                                       re.S | re.M).group(1)))
    found = {".".join(p.parent.relative_to(ROOT).parts) for top in ("rl", "rewards", "data", "sandbox")
             for p in (ROOT / top).rglob("__init__.py")}
    assert found - listed == set(), "add these to pyproject.toml [tool.setuptools] packages"
    assert listed - found == set(), "pyproject.toml names packages that do not exist"
