"""`judge`: a generative judge (LLM-as-judge) as a reward with TRL's calling convention,
`fn(completions, prompts=..., **columns) -> list[float | None]`.

    rewards:
      judge: {model: Qwen/Qwen2.5-7B-Instruct, engine: hf, parser: score, max_score: 10}          # local, greedy
      judge: {url: "http://host:8000/v1/chat/completions", model: served-name, timeout_s: 60}      # any OpenAI-compatible
      judge: {rules: accuracy, url: ..., parser: yes_no}     # model-based verification where the rules cannot judge

Per completion the judge reads one prompt made from `template` (rewards/models/judge_text.py: DEFAULT_TEMPLATE for
`parser: score`, YES_NO_TEMPLATE for `parser: yes_no`; placeholders {question} {answer} {reference} {max_score}):
the question is the row's prompt (its last user turn), the answer the part of the completion `mode` selects
(`after_think`, default: the final answer after the reasoning; `whole`), the reference the row's `reference_column`
(`answer`). Its reply is parsed (`parse_verdict`) into a value in [0, 1]; a reply without a verdict gives None
("cannot judge", left out of the reward's mean) and is counted as `parse_failures`.

Backends: `url` -> rewards/models/judge_http.py (an OpenAI-compatible chat-completions endpoint: silence deadline
`timeout_s`, `retries` with backoff, `concurrency` requests in flight); otherwise a local model run greedily by the
project's own rollout engines (`engine: hf`, the transformers engine; `engine: vllm`, a colocated vLLM engine), which
rl/rollout/judge_engine.py registers here with `register_judge_engine` (rewards never import rl; the GRPO stage
imports rl.rollout, which registers them; a TRL user imports rl.rollout.judge_engine once).

Cache: the verdict of each (judge, rendered prompt) is kept (LRU, `cache_size` entries; 0 turns it off), so the same
question + answer + reference is judged once (GRPO groups repeat answers often); duplicates within a batch cost one
call too. With `rules:` (a rule reward such as `accuracy`), that reward scores the batch first and only its None rows
(it could not judge: e.g. a gold answer that does not parse) go to the judge; `rules_params` are its parameters.
`judge_if: none_or_zero` sends the rows it scores <= 0 too (a second opinion on what the rules call wrong, e.g. an
answer in words: the judge can only raise those rows, so watch for a lenient judge).

Step metrics (`rewards/judge/<key>`): calls, cache_hits, parse_failures, timeouts, failed_calls, call_s (seconds per
call), and with `rules:` rule_decided / judged (rows).
"""
from __future__ import annotations

import collections
import time
from typing import Any, Callable

from rewards.extract import completion_text
from rewards.models.judge_text import (DEFAULT_TEMPLATE, PARSERS, YES_NO_TEMPLATE, cache_key, check_template,
                                       parse_verdict, question_text, render_prompt, summarize_judge)
from rewards.models.scores import MODES, scored_part
from rewards.scoring.registry import get_reward, register_reward

# name -> builder(model, max_tokens=..., dtype=..., device=..., **options) returning an object with `warmup()` and
# `generate(prompts: list[str]) -> (texts, counts)`; filled by rl/rollout/judge_engine.py
JUDGE_ENGINES: dict[str, Callable[..., Any]] = {}
ENGINES = ("hf", "vllm")
JUDGE_IF = ("none", "none_or_zero")  # with `rules:`, the rows the judge scores: the rule's None (and its <= 0)


def register_judge_engine(name: str, builder: Callable[..., Any]) -> None:
    """Make a local judge backend available as `engine: name` (the project's rollout engines register themselves)."""
    JUDGE_ENGINES[name] = builder


class Judge:
    """The judge reward: renders, looks up the cache, asks the backend for the misses, parses (see the module)."""

    batched = True  # RewardScorer: one call per batch, in the scorer's process, under one deadline
    requires = ("prompts",)

    def __init__(self, backend: Any, template: str, parser: str, max_score: int, mode: str,
                 delimiters: tuple[str, ...], reference_column: str, cache_size: int, rules: Any = None,
                 judge_if: str = "none"):
        self.backend, self.template, self.parser, self.max_score = backend, template, parser, max_score
        self.mode, self.delimiters, self.reference_column = mode, delimiters, reference_column
        self.cache_size, self.rules, self.judge_if = cache_size, rules, judge_if
        self.cache: collections.OrderedDict[str, float | None] = collections.OrderedDict()
        self._counts: dict[str, float] = {}

    def warmup(self) -> None:
        self.backend.warmup()
        if self.rules is not None:
            self.rules.warmup()

    def prompt_for(self, prompt: Any, completion: Any, reference: Any) -> str:
        answer = scored_part(completion_text(completion), self.mode, self.delimiters)
        return render_prompt(self.template, question_text(prompt), answer,
                             None if reference is None else str(reference), self.max_score)

    def judge(self, judge_prompts: list[str]) -> list[float | None]:
        """Verdicts for rendered prompts: cached ones from the cache, the others (each distinct prompt once) from
        the backend, parsed, then cached."""
        keys = [cache_key(self.backend.name, self.parser, str(self.max_score), p) for p in judge_prompts]
        out: list[float | None] = [None] * len(keys)
        todo: dict[str, list[int]] = {}
        for i, k in enumerate(keys):
            if k in self.cache:
                self.cache.move_to_end(k)
                out[i] = self.cache[k]
                self._add({"cache_hits": 1.0})
            else:
                todo.setdefault(k, []).append(i)
        if not todo:
            return out
        t0 = time.perf_counter()
        texts, counts = self.backend.generate([judge_prompts[idx[0]] for idx in todo.values()])
        self._add({**counts, "seconds": time.perf_counter() - t0})
        self._add({"cache_hits": float(sum(len(idx) - 1 for idx in todo.values()))})  # in-batch duplicates
        for (k, idx), text in zip(todo.items(), texts):
            if text is None:  # the call failed (counted by the backend): not cached, tried again next time
                continue
            verdict = parse_verdict(text, self.parser, self.max_score)
            if verdict is None:
                self._add({"parse_failures": 1.0})
            for i in idx:
                out[i] = verdict
            if self.cache_size:
                self.cache[k] = verdict
                while len(self.cache) > self.cache_size:
                    self.cache.popitem(last=False)
        return out

    def __call__(self, completions: list[Any], prompts: list[Any] | None = None, **kwargs: Any
                 ) -> list[float | None]:
        if prompts is None:
            raise ValueError("judge needs the prompts (TRL passes `prompts`; the GRPO stage does)")
        n = len(completions)
        if len(prompts) != n:
            raise ValueError(f"judge: {len(prompts)} prompts for {n} completions")
        out: list[float | None] = [None] * n
        rows = list(range(n))
        if self.rules is not None:  # the rule reward first; the judge only where it could not judge (None)
            ruled = self.rules(list(completions), prompts=list(prompts), **kwargs)
            rows = [i for i, v in enumerate(ruled) if v is None or (self.judge_if == "none_or_zero" and v <= 0)]
            for i, v in enumerate(ruled):
                out[i] = None if v is None else float(v)
            self._add({"rule_decided": float(n - len(rows)), "judged": float(len(rows))})
        refs = kwargs.get(self.reference_column)
        refs = list(refs) if isinstance(refs, (list, tuple)) and len(refs) == n else [None] * n
        verdicts = self.judge([self.prompt_for(prompts[i], completions[i], refs[i]) for i in rows])
        for i, v in zip(rows, verdicts):
            out[i] = v
        return out

    def _add(self, counts: dict[str, float]) -> None:
        for k, v in counts.items():
            self._counts[k] = self._counts.get(k, 0.0) + v

    def drain_metrics(self) -> dict[str, float]:
        counts, self._counts = self._counts, {}
        if self.rules is not None:  # the rule reward's own counters, under its name
            counts.update({f"rules_{k}": v for k, v in self.rules.drain_metrics().items()})
        return counts

    summarize = staticmethod(summarize_judge)


def _positive(value: Any, integer: bool = False, zero: bool = False) -> bool:
    if isinstance(value, bool) or not isinstance(value, int if integer else (int, float)):
        return False
    return value >= 0 if zero else value > 0


@register_reward("judge", factory=True, batched=True)
def make_judge(model: str = "", url: str = "", engine: str = "hf", template: str = "", parser: str = "score",
               max_score: int = 10, mode: str = "after_think", reference_column: str = "answer",
               max_tokens: int = 256, timeout_s: float = 60.0, retries: int = 2, concurrency: int = 8,
               api_key_env: str = "", cache_size: int = 4096, dtype: str = "auto", device: str = "auto",
               offload: bool = False, rules: str = "", rules_params: dict | None = None, judge_if: str = "none",
               reasoning_delimiters: list[str] | tuple[str, ...] = ("</think>",)) -> Judge:
    """Check the parameters (nothing loads or connects here: a recipe is validated before any model loads) and
    return the reward; its `warmup()` loads the local judge. One-line ValueError naming the bad parameter."""
    def bad(what: str) -> ValueError:
        return ValueError(f"reward 'judge': {what}")
    if not isinstance(model, str) or not isinstance(url, str):
        raise bad("model and url must be strings")
    if not url and not model:
        raise bad("parameter 'model' (a local judge model, run by `engine`) or 'url' (an OpenAI-compatible "
                  "chat-completions endpoint) is required")
    if url and not url.startswith(("http://", "https://")):
        raise bad(f"url={url!r} must start with http:// or https://")
    if not url and engine not in ENGINES:
        raise bad(f"engine={engine!r} is not one of: {', '.join(ENGINES)}")
    if parser not in PARSERS:
        raise bad(f"parser={parser!r} is not one of: {', '.join(PARSERS)}")
    if mode not in MODES:
        raise bad(f"mode={mode!r} is not one of: {', '.join(MODES)}")
    try:
        template = check_template(template or (DEFAULT_TEMPLATE if parser == "score" else YES_NO_TEMPLATE))
    except ValueError as e:
        raise bad(str(e)) from None
    for key, value, integer, zero in (("max_score", max_score, True, False), ("max_tokens", max_tokens, True, False),
                                      ("timeout_s", timeout_s, False, False), ("retries", retries, True, True),
                                      ("concurrency", concurrency, True, False), ("cache_size", cache_size, True, True)):
        if not _positive(value, integer, zero):
            raise bad(f"{key} must be {'an integer' if integer else 'a number'} {'>= 0' if zero else '> 0'}, "
                      f"got {value!r}")
    if not isinstance(reference_column, str) or not reference_column:
        raise bad(f"reference_column must be a column name, got {reference_column!r}")
    if not isinstance(offload, bool):
        raise bad(f"offload must be true or false, got {offload!r}")
    if isinstance(reasoning_delimiters, str) or not reasoning_delimiters \
            or not all(isinstance(d, str) and d for d in reasoning_delimiters):
        raise bad(f"reasoning_delimiters must be a non-empty list of strings, got {reasoning_delimiters!r}")
    if rules_params is not None and not isinstance(rules_params, dict):
        raise bad(f"rules_params must be a mapping of the rule reward's parameters, got {rules_params!r}")
    if judge_if not in JUDGE_IF:
        raise bad(f"judge_if={judge_if!r} is not one of: {', '.join(JUDGE_IF)}")
    rule_reward = None
    if rules:
        if rules == "judge":
            raise bad("rules must name a rule reward, not the judge")
        try:
            rule_reward = get_reward(rules, **(rules_params or {}))
        except ValueError as e:
            raise bad(f"rules: {e}") from None
    if url:
        from rewards.models.judge_http import HTTPJudgeBackend
        backend = HTTPJudgeBackend(url, model, max_tokens, float(timeout_s), retries, concurrency, api_key_env)
    else:
        backend = LocalJudgeBackend(engine, model, max_tokens=max_tokens, dtype=dtype, device=device, offload=offload)
    return Judge(backend, template, parser, max_score, mode, tuple(reasoning_delimiters), reference_column,
                 cache_size, rule_reward, judge_if)


class LocalJudgeBackend:
    """A local judge model behind a registered engine (JUDGE_ENGINES), built on `warmup()` (not in the factory:
    building loads the model)."""

    def __init__(self, engine: str, model: str, **options: Any):
        self.engine, self.model, self.options = engine, model, options
        self.name = f"{engine}:{model}"
        self.impl = None

    def warmup(self) -> None:
        if self.impl is not None:
            return
        builder = JUDGE_ENGINES.get(self.engine)
        if builder is None:
            raise ValueError(f"judge engine {self.engine!r} is provided by the project's rollout engines: import "
                             f"rl.rollout.judge_engine first (the GRPO stage does)")
        self.impl = builder(self.model, **self.options)
        self.impl.warmup()

    def generate(self, prompts: list[str]) -> tuple[list[str | None], dict[str, float]]:
        self.warmup()
        return self.impl.generate(prompts)
