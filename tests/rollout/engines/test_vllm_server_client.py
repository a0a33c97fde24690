"""The rollout-server client (rl/rollout/engines/vllm_server.py) against a fake server on loopback (issue 16, defect 4).

The fake speaks the part of vLLM 0.31's HTTP protocol the client uses (`/health`, `/v1/models`, streamed
`/v1/completions` as server-sent events in chunked HTTP/1.1, `/reset_prefix_cache`) and can stream slowly but
steadily or stall. The NCCL transfer needs GPUs, so the push tests replace trl's `VLLMClient` with a recording one
that consumes the tensors as the packed broadcast would. Before the fix: a completion was one non-streamed read whose
deadline was its whole length, and the push made one `update_named_param` call (one HTTP request + one broadcast)
per tensor.
"""
from __future__ import annotations

import contextlib
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import torch

pytest.importorskip("requests")

from rl.rollout.engines import vllm_adapter as va  # noqa: E402
from rl.rollout.engines.vllm_server import ServerClient, VLLMServerError  # noqa: E402


class FakeServer:
    """Completion k of prompt p is tokens p[0]+k, p[0]+k+1, ...; token t has logprob -(t+1)/10. One event per engine
    step per choice, `interval` seconds apart; with `stall_after` events it then goes silent for `stall_s`."""

    def __init__(self, length=4, interval=0.0, stall_after=None, stall_s=30.0):
        self.length, self.interval, self.stall_after, self.stall_s = length, interval, stall_after, stall_s
        self.paths: list[str] = []
        self.bodies: list[dict] = []  # the /v1/completions requests
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def _json(self, obj):
                body = json.dumps(obj).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self):
                fake.paths.append(self.path)
                self._json({"data": [{"id": "fake"}]} if self.path == "/v1/models" else {})

            def do_POST(self):
                fake.paths.append(self.path)
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])) or b"{}")
                if self.path != "/v1/completions":
                    return self._json({})
                assert body["stream"] is True
                fake.bodies.append(body)
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.send_header("Transfer-Encoding", "chunked")
                self.end_headers()
                try:
                    fake.stream(self, body)
                except (BrokenPipeError, ConnectionResetError):
                    pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    def stream(self, handler, body):
        def send(text):
            data = f"data: {text}\n\n".encode()
            handler.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
            handler.wfile.flush()

        n, sent = body["n"], 0
        for t in range(self.length):
            for p_idx, prompt in enumerate(body["prompt"]):
                for k in range(n):
                    if self.stall_after is not None and sent == self.stall_after:
                        time.sleep(self.stall_s)
                        return
                    send(json.dumps({"choices": [{
                        "index": p_idx * n + k, "text": "", "token_ids": [prompt[0] + k + t],
                        "logprobs": {"token_logprobs": [-(t + 1) / 10]},
                        "finish_reason": "length" if t == self.length - 1 else None}]}))
                    sent += 1
            time.sleep(self.interval)
        send("[DONE]")
        handler.wfile.write(b"0\r\n\r\n")

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@contextlib.contextmanager
def fake_server(**kw):
    server = FakeServer(**kw)
    try:
        yield server
    finally:
        server.close()


FIELDS = dict(n=2, temperature=1.0, top_p=1.0, top_k=0, max_tokens=4, greedy=False, eos_token_id=None)


def test_streamed_completions_are_assembled_per_prompt():
    with fake_server(length=3) as server:
        client = ServerClient(server.url, timeout_s=5, weight_transfer="disk", shared_dir=None)
        seeded = [va.server_sampling_fields(seed=10 + 2 * i, **FIELDS) for i in range(2)]  # one request per prompt
        for fields in (seeded, [va.server_sampling_fields(seed=None, **FIELDS)] * 2):  # one request for both
            groups = client.generate([[10], [50]], fields, 2)
            assert [[c.token_ids for c in g] for g in groups] == [[[10, 11, 12], [11, 12, 13]],
                                                                  [[50, 51, 52], [51, 52, 53]]]
            assert groups[1][0].logprobs == [-0.1, -0.2, -0.3] and groups[0][1].finish_reason == "length"
        client.close()


class Chars:
    """A tokenizer stand-in: id = ord(character), no eos."""
    eos_token_id = None

    def decode(self, ids, skip_special_tokens=True):
        return "".join(map(chr, ids))


@pytest.mark.parametrize("stop, expected", [
    # no stop strings: nothing about them in the request, special tokens skipped as before
    ((), {"skip_special_tokens": True}),
    # stop strings (multi-turn episodes): the server ends a request at the token completing one, that token kept
    # in token_ids (and the string in its text), matched on text with special tokens (a template's <|im_end|>),
    # as the colocated engine and hf.py do
    (("```output", "<|im_end|>"), {"stop": ["```output", "<|im_end|>"], "include_stop_str_in_output": True,
                                   "skip_special_tokens": False}),
])
def test_stop_strings_reach_the_server(stop, expected):
    from rl.core.episode import SamplingParams
    from rl.rollout.engines.vllm import VLLMEngine
    with fake_server(length=2) as server:
        engine = VLLMEngine("fake", Chars(), mode="server", server_url=server.url, timeout_s=5,
                            weight_transfer="disk")
        (c,), = engine.generate([[70]], SamplingParams(greedy=True, max_tokens=2, stop=stop))
        engine.close()
    assert c.completion_ids == [70, 71] and c.text == "FG"
    (body,) = server.bodies
    got = {k: body[k] for k in ("stop", "include_stop_str_in_output", "skip_special_tokens") if k in body}
    assert got == expected


def test_slow_but_steady_stream_outlasts_the_timeout():
    """12 engine steps 0.25 s apart: 3 s in all, three times timeout_s = 1 s, but never 1 s without an event."""
    with fake_server(length=12, interval=0.25) as server:
        client = ServerClient(server.url, timeout_s=1.0, weight_transfer="disk", shared_dir=None)
        t0 = time.monotonic()
        groups = client.generate([[10]], [va.server_sampling_fields(seed=None, **FIELDS)], 2)
        assert time.monotonic() - t0 > 2.5
        assert groups[0][0].token_ids == list(range(10, 22))
        client.close()


def test_a_stalled_stream_times_out_with_one_line():
    """Three events, then silence: the call fails about timeout_s after the last event, not after the stall's 30 s."""
    with fake_server(length=8, stall_after=3, stall_s=30) as server:
        client = ServerClient(server.url, timeout_s=1.0, weight_transfer="disk", shared_dir=None)
        t0 = time.monotonic()
        with pytest.raises(VLLMServerError) as err:
            client.generate([[10], [20]], [va.server_sampling_fields(seed=s, **FIELDS) for s in (1, 3)], 2)
        assert 1.0 <= time.monotonic() - t0 < 3.0
        msg = str(err.value)
        assert "\n" not in msg and "sent nothing for 1s" in msg and "rollout.timeout_s" in msg
        client.close()


class RecordingNCCL:
    """Stands in for trl's VLLMClient: records each update_named_params (one /update_weights request announcing the
    metadata + one packed broadcast of the tensors) and keeps what the broadcast carried."""

    def __init__(self):
        self.calls: list[list[tuple]] = []
        self.updates = 0
        self.received: dict[str, torch.Tensor] = {}

    def init_communicator(self, device):
        pass

    @contextlib.contextmanager
    def weight_update(self):  # /start_weight_update ... /finish_weight_update
        self.updates += 1
        yield

    def update_named_params(self, metadata, named_params):
        self.calls.append(list(metadata))
        for (name, dtype, shape), (got, t) in zip(metadata, named_params, strict=True):
            assert (name, dtype, shape) == (got, str(t.dtype).removeprefix("torch."), list(t.shape))
            self.received[name] = t.clone()

    def close_communicator(self):
        pass


def weights(scale: float):
    # 64 + 32 + 12 bytes: with 80-byte chunks the first push sends [a, b] (96 bytes >= 80), then [c]
    return [("a", torch.full((4, 4), scale)), ("b", torch.arange(8.0) * scale),
            ("c", torch.ones(2, 3, dtype=torch.bfloat16) * scale)]


def test_nccl_push_is_one_call_per_push_after_the_first(monkeypatch):
    nccl = RecordingNCCL()
    monkeypatch.setattr(va, "nccl_client", lambda url, timeout_s: nccl)
    with fake_server() as server:
        client = ServerClient(server.url, timeout_s=5, weight_transfer="nccl", shared_dir=None, push_chunk_bytes=80)
        client.push(iter(weights(1.0)))
        assert [[m[0] for m in call] for call in nccl.calls] == [["a", "b"], ["c"]]  # metadata recorded on the way
        assert nccl.updates == 1  # one start/finish for the whole push
        for scale in (2.0, 3.0):
            nccl.calls.clear()
            client.push(iter(weights(scale)))
            assert nccl.calls == [[("a", "float32", [4, 4]), ("b", "float32", [8]), ("c", "bfloat16", [2, 3])]]
            for name, t in weights(scale):
                assert torch.equal(nccl.received[name], t)
        assert client.push_calls == 4 and server.paths.count("/reset_prefix_cache") == 3
        client.close()


def test_a_push_that_differs_from_the_first_fails_with_the_tensor_named(monkeypatch):
    nccl = RecordingNCCL()
    monkeypatch.setattr(va, "nccl_client", lambda url, timeout_s: nccl)
    with fake_server() as server:
        client = ServerClient(server.url, timeout_s=5, weight_transfer="nccl", shared_dir=None)
        client.push(iter(weights(1.0)))
        changed = weights(1.0)
        changed[1] = ("b", torch.zeros(9))
        with pytest.raises(VLLMServerError, match=r"tensor 1 is \('b', 'float32', \[9\]\)"):
            client.push(iter(changed))
        client.close()


def test_a_push_without_progress_times_out(monkeypatch):
    nccl = RecordingNCCL()
    monkeypatch.setattr(va, "nccl_client", lambda url, timeout_s: nccl)
    with fake_server() as server:
        client = ServerClient(server.url, timeout_s=0.5, weight_transfer="nccl", shared_dir=None)

        def stalling():
            yield "a", torch.zeros(1)
            time.sleep(5)  # e.g. a rank that never joins the gather
            yield "b", torch.zeros(1)

        t0 = time.monotonic()
        with pytest.raises(VLLMServerError, match="made no progress for 0.5s"):
            client.push(stalling())
        assert time.monotonic() - t0 < 2.0


def test_streamed_events_and_engine_steps_tick_the_callers_progress():
    """The rollout worker's heartbeat hears the engine's progress: a server stream of 5 tokens for n = 2 ticks
    `on_progress` once per line read (at least one per token event), and a colocated engine's steps tick it once per
    `llm_engine.step()` (vllm_adapter._stepping; the class's own step is back afterwards)."""
    ticks = []
    with fake_server(length=5) as server:
        client = ServerClient(server.url, timeout_s=5, weight_transfer="disk", shared_dir=None)
        client.on_progress = lambda: ticks.append(1)
        client.generate([[10]], [va.server_sampling_fields(seed=None, **FIELDS)], 2)
        client.close()
    assert len(ticks) >= 5

    class Engine:
        def step(self):
            return "stepped"

    class LLM:
        llm_engine = Engine()

        def generate(self):
            return [self.llm_engine.step() for _ in range(7)]

    llm, steps = LLM(), []
    with va._stepping(llm, lambda: steps.append(1)):
        assert llm.generate() == ["stepped"] * 7
    assert len(steps) == 7 and "step" not in vars(llm.llm_engine)
    llm.generate()
    assert len(steps) == 7
