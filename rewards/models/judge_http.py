"""The `judge` reward's HTTP backend: any OpenAI-compatible chat-completions endpoint (vLLM's `vllm serve`, SGLang,
llama.cpp's server, a hosted API), with the standard library only.

    rewards:
      judge: {url: "http://judge-host:8000/v1/chat/completions", model: Qwen/Qwen2.5-7B-Instruct, timeout_s: 60}

One request per judge prompt, `concurrency` in flight:

    request   {"model": M, "messages": [{"role": "user", "content": PROMPT}], "temperature": 0, "max_tokens": K}
    answer    {"choices": [{"message": {"content": TEXT}}, ...]}

`timeout_s` is the silence deadline (as the reward_model client's): a request whose server sends nothing for that
long fails, as does a refused connection or an HTTP 5xx or 429, and is tried again up to `retries` times (0.5 s, 1 s,
2 s ... apart, at most 5 s). An HTTP 4xx other than 429 is not retried. A request that still fails gives None for
its row, counted as `failed_calls` (and `timeouts` when it went silent); the judge raises only when every request of
a batch failed (a server that is down), which stops the run (RewardScorer's RewardError). The API key, when the
endpoint needs one, is read from the environment variable named by `api_key_env` (never written in a recipe).
"""
from __future__ import annotations

import json
import os
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor


class CallFailed(Exception):
    """One request that failed after its retries; `timed_out` when the last try went silent."""

    def __init__(self, message: str, timed_out: bool):
        super().__init__(message)
        self.timed_out = timed_out


def chat_completion(url: str, model: str, prompt: str, max_tokens: int, timeout_s: float, retries: int,
                    api_key: str | None = None) -> str:
    """The content of the first choice for one user turn `prompt`, greedy (temperature 0). CallFailed (one line)
    once `retries` + 1 tries have failed; ValueError for an answer that is not the chat-completions shape."""
    body = {"messages": [{"role": "user", "content": prompt}], "temperature": 0, "max_tokens": max_tokens}
    if model:
        body["model"] = model
    headers = {"Content-Type": "application/json"}
    if api_key:
        headers["Authorization"] = f"Bearer {api_key}"
    request = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST", headers=headers)
    why, timed_out = "", False
    for attempt in range(retries + 1):
        try:
            with urllib.request.urlopen(request, timeout=timeout_s) as answer:
                raw = answer.read().decode(errors="replace")
            try:
                choice = json.loads(raw)["choices"][0]
                content = choice["message"]["content"] if "message" in choice else choice["text"]
            except (json.JSONDecodeError, KeyError, IndexError, TypeError):
                raise ValueError(f"judge server {url}: not a chat-completions answer: {raw[:200]!r}") from None
            return "" if content is None else str(content)
        except urllib.error.HTTPError as e:
            why, timed_out = f"HTTP {e.code}: {e.read().decode(errors='replace')[:200]}", False
            if e.code < 500 and e.code != 429:
                raise ValueError(f"judge server {url}: {why}") from None
        except (urllib.error.URLError, TimeoutError, ConnectionError, OSError) as e:
            reason = getattr(e, "reason", e)
            timed_out = "timed out" in str(reason)
            why = f"silent for {timeout_s:g} s (timeout_s)" if timed_out else str(reason)
        if attempt < retries:
            time.sleep(min(0.5 * 2 ** attempt, 5.0))
    raise CallFailed(f"judge server {url}: no answer after {retries + 1} tries; last: {why}", timed_out)


class HTTPJudgeBackend:
    """`generate(prompts) -> (texts, counts)`: texts[i] is None where the request failed after its retries."""

    def __init__(self, url: str, model: str, max_tokens: int, timeout_s: float, retries: int, concurrency: int,
                 api_key_env: str = ""):
        self.url, self.model, self.max_tokens = url, model, max_tokens
        self.timeout_s, self.retries, self.concurrency = timeout_s, retries, concurrency
        self.api_key_env = api_key_env
        self.name = f"{url}#{model}"

    def warmup(self) -> None:
        if self.api_key_env and not os.environ.get(self.api_key_env):
            raise ValueError(f"judge: api_key_env={self.api_key_env!r} names an environment variable that is not set")

    def generate(self, prompts: list[str]) -> tuple[list[str | None], dict[str, float]]:
        key = os.environ.get(self.api_key_env) if self.api_key_env else None
        counts = {"calls": 0.0, "timeouts": 0.0, "failed_calls": 0.0}
        errors: list[str] = []

        def one(prompt: str) -> str | None:
            try:
                return chat_completion(self.url, self.model, prompt, self.max_tokens, self.timeout_s, self.retries,
                                       key)
            except CallFailed as e:
                errors.append(str(e))
                counts["timeouts"] += float(e.timed_out)
                counts["failed_calls"] += 1.0
                return None

        with ThreadPoolExecutor(max_workers=max(1, min(self.concurrency, len(prompts)))) as pool:
            texts = list(pool.map(one, prompts))
        counts["calls"] = float(len(prompts))
        if prompts and len(errors) == len(prompts):
            raise ValueError(f"every judge request of this batch failed ({len(prompts)}); first: {errors[0]}")
        return texts, counts
