"""The `judge` reward's backends: an OpenAI-compatible chat-completions endpoint (a small fake server here:
requests, retries with backoff, the silence deadline, one-line errors, the API key from the environment) and a local
model run greedily by the project's transformers engine (rl/rollout/judge_engine.py; its text equals a plain greedy
decode of the same model)."""
from __future__ import annotations

import json
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import torch

from rewards import RewardError, RewardScorer, get_reward

TEMPLATE = "Q:{question} A:{answer} R:{reference}"


class FakeChatServer:
    """Answers chat-completions requests with "Score: N", N = len(answer) % 11; `fail_first` requests get HTTP
    `fail_code` first; `status` overrides every answer's code. Records each request body and its headers."""

    def __init__(self, fail_first: int = 0, fail_code: int = 503, status: int | None = None):
        self.requests: list[dict] = []
        self.headers: list[dict] = []
        self.fail_first, self.fail_code, self.status = fail_first, fail_code, status
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])).decode())
                outer.requests.append(body)
                outer.headers.append(dict(self.headers))
                if outer.status is not None or len(outer.requests) <= outer.fail_first:
                    return self._send(outer.status or outer.fail_code, {"error": "busy"})
                prompt = body["messages"][0]["content"]
                answer = prompt.split("A:")[1].split(" R:")[0]
                self._send(200, {"choices": [{"message": {"role": "assistant",
                                                          "content": f"Fine.\nScore: {len(answer) % 11}"}}]})

            def _send(self, code, obj):
                data = json.dumps(obj).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args):
                return None

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1/chat/completions"

    def __enter__(self):
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()


def test_http_judge_scores_with_an_openai_compatible_server(monkeypatch):
    monkeypatch.setenv("JUDGE_KEY", "sk-test")
    with FakeChatServer() as srv:
        judge = get_reward("judge", url=srv.url, model="judge-7b", template=TEMPLATE, max_tokens=64,
                           api_key_env="JUDGE_KEY", concurrency=2)
        judge.warmup()
        got = judge(["<think> x </think>five", "abc", "five"], prompts=["2+3?"] * 3, answer=["5"] * 3)
    # "five": 4 -> 0.4 (rows 0 and 2: one request), "abc": 3 -> 0.3
    assert got == pytest.approx([0.4, 0.3, 0.4])
    assert len(srv.requests) == 2
    body = srv.requests[0]
    assert (body["model"], body["temperature"], body["max_tokens"]) == ("judge-7b", 0, 64)
    assert body["messages"][0]["role"] == "user" and body["messages"][0]["content"].startswith("Q:2+3? A:")
    assert all(h.get("Authorization") == "Bearer sk-test" for h in srv.headers)
    counts = judge._fn.drain_metrics()
    assert (counts["calls"], counts["cache_hits"], counts["failed_calls"]) == (2.0, 1.0, 0.0)


def test_http_5xx_is_retried_with_backoff(monkeypatch):
    sleeps = []
    monkeypatch.setattr("rewards.models.judge_http.time.sleep", sleeps.append)
    with FakeChatServer(fail_first=2) as srv:
        judge = get_reward("judge", url=srv.url, template=TEMPLATE, retries=2, concurrency=1)
        assert judge(["abc"], prompts=["q"], answer=["g"]) == pytest.approx([0.3])
    assert len(srv.requests) == 3 and sleeps == [0.5, 1.0]


def test_http_4xx_is_not_retried_and_is_one_line():
    with FakeChatServer(status=401) as srv:
        judge = get_reward("judge", url=srv.url, template=TEMPLATE, retries=3)
        with pytest.raises(ValueError, match=r"^judge server .*: HTTP 401: .*busy") as e:
            judge(["abc"], prompts=["q"], answer=["g"])
    assert len(srv.requests) == 1 and "\n" not in str(e.value)


def test_a_silent_judge_server_times_out_and_stops_the_scorer():
    with socket.socket() as listener:  # accepts connections (backlog) but never answers
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        url = f"http://127.0.0.1:{listener.getsockname()[1]}/v1/chat/completions"
        spec = {"judge": {"url": url, "template": TEMPLATE, "timeout_s": 0.3, "retries": 0}}
        with RewardScorer(spec, num_workers=0) as scorer:
            with pytest.raises(RewardError) as e:
                scorer.score(["a", "bb"], {"prompts": ["q", "q"]})
    text = str(e.value)
    assert "every judge request of this batch failed (2)" in text and "silent for 0.3 s (timeout_s)" in text
    assert "\n" not in text


def test_some_failed_requests_give_none_and_are_counted(monkeypatch):
    from rewards.models import judge_http
    real = judge_http.chat_completion

    def flaky(url, model, prompt, *args, **kwargs):
        if "A:bad" in prompt:
            raise judge_http.CallFailed("judge server x: no answer after 1 tries; last: silent", timed_out=True)
        return real(url, model, prompt, *args, **kwargs)

    monkeypatch.setattr(judge_http, "chat_completion", flaky)
    with FakeChatServer() as srv:
        judge = get_reward("judge", url=srv.url, template=TEMPLATE)
        assert judge(["bad", "abc"], prompts=["q", "q"]) == [None, pytest.approx(0.3)]
    m = judge.summarize(judge._fn.drain_metrics())
    assert (m["calls"], m["failed_calls"], m["timeouts"]) == (2.0, 1.0, 1.0)


def test_a_missing_api_key_variable_fails_at_warmup():
    judge = get_reward("judge", url="http://127.0.0.1:9/v1/chat/completions", api_key_env="NO_SUCH_VARIABLE_X")
    with pytest.raises(ValueError, match="api_key_env='NO_SUCH_VARIABLE_X' names an environment variable"):
        judge.warmup()


# -- the local judge through the project's transformers engine ---------------------------------------------------------

@pytest.fixture(scope="module")
def tiny_judge_path():
    import rl.rollout.judge_engine  # noqa: F401  (registers engine: hf / vllm)
    from rl.tiny.sources import resolve_model_path
    return resolve_model_path("tiny")


def plain_greedy(path: str, prompt: str, max_tokens: int) -> str:
    """Argmax decoding without a KV cache, one token at a time, on the chat-rendered prompt (independent of the
    engine's batched, cached loop); stops at EOS."""
    from transformers import AutoModelForCausalLM, AutoTokenizer
    tok = AutoTokenizer.from_pretrained(path)
    model = AutoModelForCausalLM.from_pretrained(path).eval()
    text = tok.apply_chat_template([{"role": "user", "content": prompt}], tokenize=False, add_generation_prompt=True)
    ids = tok(text, add_special_tokens=False)["input_ids"]
    out: list[int] = []
    with torch.no_grad():
        for _ in range(max_tokens):
            nxt = int(model(input_ids=torch.tensor([ids + out])).logits[0, -1].argmax())
            out.append(nxt)
            if nxt == tok.eos_token_id:
                break
    return tok.decode(out, skip_special_tokens=True)


@pytest.mark.parametrize("offload", [False, True])
def test_local_hf_judge_is_greedy_decoding_of_the_judge_model(tiny_judge_path, offload):
    template = "Q: {question} A: {answer} Score:"
    judge = get_reward("judge", model=tiny_judge_path, engine="hf", template=template, max_tokens=12,
                       offload=offload, device="cpu")
    judge.warmup()
    comps, prompts = ["<think> 3+4 </think> 7", "9"], ["What is 3+4?", "What is 2+2?"]
    got = judge(comps, prompts=prompts)
    impl = judge._fn.backend.impl
    texts = [plain_greedy(tiny_judge_path, f"Q: {q} A: {a.rpartition('</think>')[2]} Score:", 12)
             for q, a in zip(prompts, comps)]
    # the engine's replies are those of plain greedy decoding; their verdicts are what the parser reads in them
    from rewards.models.judge_text import parse_verdict
    assert got == [parse_verdict(t, "score", 10) for t in texts]
    replies, _ = impl.generate([f"Q: {q} A: {a.rpartition('</think>')[2]} Score:" for q, a in zip(prompts, comps)])
    assert replies == texts
    m = judge.summarize(judge._fn.drain_metrics())
    assert m["calls"] == 2.0 and m["parse_failures"] == float(sum(v is None for v in got))
    assert {p.device.type for p in impl.engine.model.parameters()} == {"cpu"}
