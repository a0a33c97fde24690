"""Entry-point glue shared by rl/grpo.py, rl/sft.py and rl/distill.py: bad input ends as one line, exit code 2."""
from __future__ import annotations

import sys
from typing import Callable


def run_cli(main: Callable[[], object]) -> None:
    from data.loading import DataError
    from rl.config import ConfigError

    try:
        main()
    except (ConfigError, DataError) as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
