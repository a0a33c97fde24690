"""Entry-point glue shared by the rl/ scripts: bad input ends as one line and exit code 2."""
from __future__ import annotations

import sys
from typing import Callable


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
