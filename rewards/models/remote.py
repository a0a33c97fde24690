"""A reward model served over HTTP: the `reward_model` reward with `url:` (the client) and a small server for any
`AutoModelForSequenceClassification` reward model (`python -m rewards.models.remote --model PATH --port 8000`).

    rewards:
      reward_model: {url: "http://rm-host:8000/score", mode: after_think, timeout_s: 60, retries: 2}

The protocol is one JSON POST per batch of `batch_size` pairs:

    request   {"prompts": [str | [messages]], "responses": [str]}     (the responses are the part `mode` selects)
    answer    {"scores": [float]}                                       (one raw score per pair, in order)

so any endpoint that speaks it can score (a wrapper around vLLM's pooling/classify server, a hosted judge, ...).
`timeout_s` is the client's silence deadline: a request whose server sends nothing for that long fails, as does a
refused connection or an HTTP 5xx, and is tried again up to `retries` times (0.5 s, 1 s, 2 s ... apart); then the
reward raises one line naming the server, and the RewardScorer stops the run (a reward that fails on every item of a
batch). An HTTP 4xx is not retried. Normalisation and the length watch happen on the client, as for a local model.
"""
from __future__ import annotations

import json
import threading
import time
import urllib.error
import urllib.request
from typing import Any

from rewards.extract import completion_text
from rewards.models.reward_model import RewardModel
from rewards.models.scores import scored_part


def post_scores(url: str, payload: dict, timeout_s: float, retries: int) -> list[float]:
    """POST `payload` as JSON, return its `scores`; ValueError (one line) once `retries` + 1 tries have failed."""
    request = urllib.request.Request(url, data=json.dumps(payload).encode(), method="POST",
                                     headers={"Content-Type": "application/json"})
    n = len(payload["responses"])
    for attempt in range(retries + 1):
        try:
            with urllib.request.urlopen(request, timeout=timeout_s) as answer:
                raw = answer.read().decode(errors="replace")
            try:
                body = json.loads(raw)
            except json.JSONDecodeError:
                raise ValueError(f"reward server {url}: the answer is not JSON: {raw[:200]!r}") from None
            scores = body.get("scores") if isinstance(body, dict) else None
            if not isinstance(scores, list) or len(scores) != n \
                    or not all(isinstance(s, (int, float)) and not isinstance(s, bool) for s in scores):
                raise ValueError(f"reward server {url}: expected {{\"scores\": [{n} numbers]}}, got "
                                 f"{str(body)[:200]}")
            return [float(s) for s in scores]
        except urllib.error.HTTPError as e:
            why = f"HTTP {e.code}: {e.read().decode(errors='replace')[:200]}"
            if e.code < 500:
                raise ValueError(f"reward server {url}: {why}") from None
        except (urllib.error.URLError, TimeoutError, ConnectionError, OSError) as e:
            reason = getattr(e, "reason", e)
            why = f"silent for {timeout_s:g} s (timeout_s)" if "timed out" in str(reason) else str(reason)
        if attempt < retries:
            time.sleep(min(0.5 * 2 ** attempt, 5.0))
    raise ValueError(f"reward server {url}: no answer after {retries + 1} tries; last: {why}")


class RemoteRewardModel(RewardModel):
    """`reward_model` with `url`: the pairs go to the server; no model is loaded in this process."""

    def __init__(self, url: str, timeout_s: float, retries: int, mode: str, normalize: bool, batch_size: int,
                 reasoning_delimiters: tuple[str, ...]):
        super().__init__(url, mode, normalize, batch_size, 0, "auto", "cpu", reasoning_delimiters)
        self.url, self.timeout_s, self.retries = url, timeout_s, retries

    def warmup(self) -> None:  # nothing to load here (the server loaded its model)
        return None

    def raw_scores(self, prompts: list[Any], completions: list[Any]) -> list[float]:
        responses = [scored_part(completion_text(c), self.mode, self.delimiters) for c in completions]
        out: list[float] = []
        for s in range(0, len(responses), self.batch_size):
            t0 = time.perf_counter()
            out.extend(post_scores(self.url, {"prompts": list(prompts[s:s + self.batch_size]),
                                              "responses": responses[s:s + self.batch_size]},
                                   self.timeout_s, self.retries))
            self._add({"forward_s": time.perf_counter() - t0, "batches": 1.0})
        return out


def make_server(model: str, host: str = "127.0.0.1", port: int = 8000, batch_size: int = 16, max_length: int = 2048,
                dtype: str = "auto", device: str = "auto"):
    """A ThreadingHTTPServer that scores the protocol's requests with a local reward model (loaded here, once;
    one forward at a time). `port=0` picks a free port (server.server_address[1])."""
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    rm = RewardModel(model, "whole", False, batch_size, max_length, dtype, device, ("</think>",))
    rm.warmup()
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 (http.server's name)
            try:
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))).decode())
                prompts, responses = body["prompts"], body["responses"]
                if not isinstance(prompts, list) or not isinstance(responses, list) or len(prompts) != len(responses):
                    raise ValueError("expected lists 'prompts' and 'responses' of one length")
                if not all(isinstance(r, str) for r in responses):
                    raise ValueError("'responses' must be strings")
            except (ValueError, KeyError, TypeError) as e:
                return self._send(400, {"error": f"bad request: {e}"})
            with lock:
                scores = rm.raw_scores(prompts, responses) if responses else []
            self._send(200, {"scores": scores})

        def _send(self, code: int, obj: dict) -> None:
            data = json.dumps(obj).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args: Any) -> None:  # quiet: one line per request is too many
            return None

    return ThreadingHTTPServer((host, port), Handler)


if __name__ == "__main__":
    import argparse
    ap = argparse.ArgumentParser(description="Serve a sequence-classification reward model over HTTP "
                                             "(POST {prompts, responses} -> {scores}).")
    ap.add_argument("--model", required=True)
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=8000)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--max-length", type=int, default=2048)
    ap.add_argument("--dtype", default="auto")
    ap.add_argument("--device", default="auto")
    a = ap.parse_args()
    server = make_server(a.model, a.host, a.port, a.batch_size, a.max_length, a.dtype, a.device)
    print(f"[reward server] {a.model} on http://{a.host}:{server.server_address[1]}/", flush=True)
    server.serve_forever()
