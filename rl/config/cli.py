"""Entry-point glue shared by the rl/ scripts: bad input ends as one line and exit code 2."""
from __future__ import annotations

import sys
from typing import Callable


USAGE = """usage: python {script} RECIPE.yaml [section.key=value ...]

  RECIPE.yaml       the whole run (see recipes/, e.g. recipes/tiny/{example})
  section.key=value override any recipe key, e.g. train.max_steps=10 output_dir=runs/x
  resume=auto       continue the run in output_dir from its latest checkpoint
  overwrite=true    delete the run already in output_dir and start over

Multi-process: accelerate launch --config_file recipes/accelerate/ddp.yaml {script} RECIPE.yaml ...
"""


def usage(script: str, example: str) -> str:
    return USAGE.format(script=script, example=example)


def recipe_cli(main: Callable[[], object], script: str, example: str, argv: list[str] | None = None,
               failures: tuple[type[Exception], ...] = ()) -> None:
    """`run_cli` for the recipe stages (GRPO, SFT, distillation): `--help` / `-h` prints the usage (exit 0), no
    arguments at all prints it to stderr (exit 2) rather than silently starting a run of the schema defaults."""
    args = sys.argv[1:] if argv is None else argv
    if any(a in ("-h", "--help") for a in args):
        print(usage(script, example), end="")
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
