"""Entry-point glue shared by the rl/ scripts: bad input ends as one line and exit code 2."""
from __future__ import annotations

import os
import sys
from typing import Callable


USAGE = """usage: python {script} RECIPE.yaml [section.key=value ...]

  RECIPE.yaml       the whole run (see recipes/, e.g. recipes/tiny/{example})
  section.key=value override any recipe key, e.g. train.max_steps=10 output_dir=runs/x
  resume=auto       continue the run in output_dir from its latest checkpoint
  overwrite=true    delete the run already in output_dir and start over

Multi-process: accelerate launch --config_file recipes/accelerate/ddp.yaml {script} RECIPE.yaml ...
"""


SCHEMAS = {"rl/grpo.py": ("rl.config.grpo", "GRPOConfig"), "rl/sft.py": ("rl.config.sft", "SFTConfig"),
           "rl/distill.py": ("rl.config.distill", "DistillConfig")}


def _value(v) -> str:
    import json
    if v is None or isinstance(v, bool):
        return {None: "null", True: "true", False: "false"}[v]
    return json.dumps(v, separators=(",", ":")) if isinstance(v, (list, tuple, dict)) else str(v)


def schema_help(schema, width: int = 118) -> str:
    """Every section of a recipe schema with its keys and defaults, one wrapped paragraph per section:

    >>> from dataclasses import dataclass, field
    >>> @dataclass
    ... class Train:
    ...     learning_rate: float = 1e-6
    ...     seed: int = 0
    >>> @dataclass
    ... class Recipe:
    ...     output_dir: str = "runs/x"
    ...     train: Train = field(default_factory=Train)
    >>> print(schema_help(Recipe))
    keys and defaults (section.key=value overrides any of them):
      output_dir=runs/x
      train: learning_rate=1e-06, seed=0
    """
    import dataclasses
    import textwrap

    def section(obj, prefix: str) -> list[tuple[str, list[str]]]:
        plain, nested = [], []
        for f in dataclasses.fields(obj):
            value = getattr(obj, f.name)
            if dataclasses.is_dataclass(value):
                nested += section(value, f"{prefix}{f.name}.")
            else:
                plain.append(f"{f.name}={_value(value)}")
        return [(prefix.rstrip("."), plain)] + nested

    lines = ["keys and defaults (section.key=value overrides any of them):"]
    for name, keys in section(schema(), ""):
        if not keys:
            continue
        if not name:
            lines += ["  " + k for k in keys]
            continue
        lines += textwrap.wrap(f"{name}: " + ", ".join(keys), width, initial_indent="  ", subsequent_indent="    ",
                               break_on_hyphens=False)
    return "\n".join(lines)


def usage(script: str, example: str, keys: bool = False) -> str:
    """The usage text; with `keys`, every section's keys and defaults after it (`--help`)."""
    text = USAGE.format(script=script, example=example)
    if keys and script in SCHEMAS:  # before the closing launch line
        import importlib
        module, name = SCHEMAS[script]
        head, sep, launch = text.partition("\nMulti-process")
        text = head + "\n" + schema_help(getattr(importlib.import_module(module), name)) + "\n" + sep + launch
    return text


def recipe_cli(main: Callable[[], object], script: str, example: str, argv: list[str] | None = None,
               failures: tuple[type[Exception], ...] = ()) -> None:
    """`run_cli` for the recipe stages (GRPO, SFT, distillation): `--help` / `-h` prints the usage (exit 0), no
    arguments at all prints it to stderr (exit 2) rather than silently starting a run of the schema defaults."""
    args = sys.argv[1:] if argv is None else argv
    if any(a in ("-h", "--help") for a in args):
        print(usage(script, example, keys=True), end="")
        sys.exit(0)
    if not args:
        print(usage(script, example) + "error: no recipe given", file=sys.stderr)
        sys.exit(2)
    run_cli(main, failures=failures)


def run_cli(main: Callable[[], object], errors: tuple[type[Exception], ...] | None = None,
            failures: tuple[type[Exception], ...] = ()) -> None:
    """Run `main`; the expected input errors (default: recipe and data errors) print one line and exit 2; the
    expected run-time `failures` (e.g. a rollout worker that died) print their message and exit 1."""
    if errors is None:
        from data.loading import DataError
        from rl.config.recipe import ConfigError
        errors = (ConfigError, DataError)
    try:
        main()
    except errors as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    except failures as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(1)
    if launched_rank():
        exit_without_teardown()


def launched_rank() -> bool:
    """True in a process started by `accelerate launch` / `torchrun` with more than one process (WORLD_SIZE > 1)."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def exit_without_teardown(code: int = 0) -> None:
    """End a launched rank that finished its run: flush, then `os._exit`, skipping interpreter finalization.

    Why (torch 2.13, deepspeed 0.18, gloo): the entry points destroy the process group when they finish
    (`accelerator.end_training()`), but DeepSpeed keeps Python references to gloo process groups
    (`deepspeed.utils.groups._WORLD_GROUP`, ZeRO-3 parameters' `ds_process_group`), so their worker threads
    (`pt_gloo_runloop`, `gloo_tcp_loop`) outlive it, and destroying them during finalization now and then aborts the
    rank ("terminate called without an active exception"; 1 launch in ~18 of tests/e2e/test_real_chain.py's ZeRO-3 SFT
    here, after every file was written; pytorch#190489). By this point every checkpoint, log and model is written and
    closed (atomically), so nothing is lost by not finalizing; open `logging` handlers are flushed first.
    """
    import logging
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a closed pipe: nothing left to flush
            pass
    os._exit(code)
