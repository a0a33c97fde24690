"""Server-mode requests in flight (issue 21 defect 9): the vLLM client keeps `max_in_flight` requests outstanding and
returns results in prompt order. A fake `vllm serve` (a threaded HTTP server in this process, no vLLM) counts the
requests it holds at once; every handler waits until the count reaches the target (or 20 s), so the peak it records
is the client's concurrency, not an accident of timing."""
from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import SimpleNamespace

import pytest

from rl.core.episode import SamplingParams


class FakeVLLMServer(ThreadingHTTPServer):
    """/health, /v1/models and /v1/completions. A completion's token ids are [prompt's first id, j]: the test can
    tell which prompt (and which of its n samples) a result belongs to."""

    daemon_threads = True
    request_queue_size = 1024  # the listen backlog: hundreds of clients connect at once

    def __init__(self, target: int):
        super().__init__(("127.0.0.1", 0), Handler)
        self.target, self.lock = target, threading.Lock()
        self.now = self.peak = self.requests = 0
        self.reached = threading.Event()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive: the client reuses its pooled connections

    def log_message(self, *args):  # quiet
        pass

    def reply(self, body: dict) -> None:
        data = json.dumps(body).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        self.reply({"data": [{"id": "fake"}]} if self.path == "/v1/models" else {})

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        s: FakeVLLMServer = self.server
        with s.lock:
            s.now += 1
            s.requests += 1
            s.peak = max(s.peak, s.now)
            if s.now >= s.target:
                s.reached.set()
        s.reached.wait(20)  # hold the request until the client has `target` outstanding
        time.sleep(0.01)
        n = body["n"]
        choices = [{"index": p * n + j, "token_ids": [prompt[0], j], "finish_reason": "length",
                    "logprobs": {"token_logprobs": [-1.0, -2.0]}}
                   for p, prompt in enumerate(body["prompt"]) for j in range(n)]
        with s.lock:
            s.now -= 1
        # streamed, as the client asks: one server-sent event per choice, out of order (the client sorts by index)
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        for text in [json.dumps({"choices": [c]}) for c in choices[::-1]] + ["[DONE]"]:
            data = f"data: {text}\n\n".encode()
            self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()


@pytest.fixture
def fake_server(request):
    server = FakeVLLMServer(target=request.param)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


TOKENIZER = SimpleNamespace(eos_token_id=0, decode=lambda ids, skip_special_tokens=True: " ".join(map(str, ids)))


@pytest.mark.parametrize("fake_server", [256], indirect=True)
def test_server_client_keeps_256_requests_in_flight_and_returns_prompt_order(fake_server):
    """300 seeded prompts -> 300 requests (one per prompt, as server mode seeds per request); at most and at least
    256 outstanding at once; group i holds prompt i's n = 2 samples, in sample order."""
    from rl.rollout.engines.vllm import VLLMEngine
    engine = VLLMEngine("unused", TOKENIZER, mode="server", server_url=fake_server.url, timeout_s=60,
                        max_in_flight=256)
    prompts = [[1000 + i, 7] for i in range(300)]
    t0 = time.perf_counter()
    groups = engine.generate(prompts, SamplingParams(n=2, temperature=1.0, max_tokens=2, seed=5))
    elapsed = time.perf_counter() - t0
    engine.close()
    assert fake_server.requests == 300 and fake_server.peak == 256, (fake_server.requests, fake_server.peak, elapsed)
    assert [[c.completion_ids for c in g] for g in groups] == [[[1000 + i, 0], [1000 + i, 1]] for i in range(300)]
    assert groups[7][1].text == "1007 1" and groups[7][1].logprobs == [-1.0, -2.0]
    assert elapsed < 15  # not one timeout-bounded wait: the 256 were all outstanding together


@pytest.mark.parametrize("fake_server", [16], indirect=True)
def test_the_old_limit_of_16_is_what_max_in_flight_16_gives(fake_server):
    """The setting is the bound: with 16 the server never holds more than 16 (what the client did before)."""
    from rl.rollout.engines.vllm import VLLMEngine
    engine = VLLMEngine("unused", TOKENIZER, mode="server", server_url=fake_server.url, timeout_s=60,
                        max_in_flight=16)
    groups = engine.generate([[i, 1] for i in range(40)], SamplingParams(n=1, max_tokens=2, seed=0))
    engine.close()
    assert fake_server.peak == 16 and [g[0].completion_ids[0] for g in groups] == list(range(40))
