"""The one place that runs model-written code: a bubblewrap sandbox with resource limits and a wall-clock kill.

    >>> from sandbox import Sandbox, WarmSandbox
    >>> Sandbox().run(["-c", "print(6 * 7)"]).stdout      # a cold run: one bwrap sandbox per program
    b'42\\n'

bwrap.py (`Sandbox`, `Limits`, `RunResult`, `SandboxError`: run a Python program with limits, cold), warm.py
(`WarmSandbox`: one long-lived sandbox per process whose zygote, zygote.py, forks each job and sweeps between jobs).
Used by the code reward (rewards/code/) and by the tools of multi-turn episodes. Stands alone: imports no other
package of this project (tests/test_layout.py). See docs/rewards.md for what a sandbox allows.
"""
from sandbox.bwrap import Limits, RunResult, Sandbox, SandboxError
from sandbox.warm import WarmSandbox

__all__ = ["Limits", "RunResult", "Sandbox", "SandboxError", "WarmSandbox"]
