"""Multi-turn episodes: the policy writes a turn, the environment answers, the policy goes on, until the environment
says done or a limit is hit. Token-in, token-out: every turn is generated from the ids of the episode so far
(prompt + earlier turns + earlier answers, exactly as the learner will see them), the policy's tokens are appended
as the engine produced them, and only the environment's answers are tokenized, as the chat template renders them
after the turn. The conversation is never re-tokenized, so the learner trains on what the engine saw.

One episode's completion (what collate and the learner get), a hermes tool call with Qwen2.5's template:

    policy    '<tool_call>\\n{"name": "python", ...}\\n</tool_call><|im_end|>'      mask 1, engine logprobs
    answer    '\\n<|im_start|>user\\n<tool_response>\\n56088\\n</tool_response><|im_end|>\\n<|im_start|>assistant\\n'
                                                                                   mask 0, logprob 0
    policy    'The product is 56088.<|im_end|>'                                    mask 1

All episodes of a step decode together: each turn is one `engine.generate` call over every episode still running
(n = 1 each: a GRPO group is n episodes of the same row, each with its own environment), and the environments of
all episodes answer in parallel (threads; the `python` tool's sandboxes are a bounded pool).

Limits (`EpisodeLimits`): `max_turns` assistant turns; `max_tokens`, ONE budget for the whole completion (policy and
environment tokens: the recipe's max_completion_length), an answer that does not fit ends the episode as `length`;
`max_turn_tokens` per turn. An episode stopped by a limit has finish reason `length` (mask_truncated_completions
applies to it).
"""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from typing import Any, Callable

from rl.core.episode import Completion, SamplingParams
from rl.rollout.episodes.tools.parse import TORL_STOP, torl_observation

_SENTINEL = "QQturnQQ"  # plain letters: no template rewrites them


@dataclass(frozen=True)
class EpisodeLimits:
    max_turns: int = 4
    max_tokens: int = 256  # the whole completion, every turn and every answer
    max_turn_tokens: int | None = None  # one assistant turn (None: what is left of max_tokens)
    workers: int = 8  # environments answering at once


class ChatRenderer:
    """Renders prompts and environment answers with the tokenizer's chat template (`tools` given to it, so the
    template shows them in its own way, e.g. Qwen's system block)."""

    def __init__(self, tokenizer, tools: list[dict] | None = None):
        from data.templates import end_of_turn_token
        self.tokenizer, self.tools = tokenizer, tools or None
        end = end_of_turn_token(tokenizer, "chat")
        self.stop: tuple[str, ...] = (end,) if end else ()

    def _render(self, messages: list[dict], generation_prompt: bool) -> str:
        return self.tokenizer.apply_chat_template(messages, tools=self.tools, tokenize=False,
                                                  add_generation_prompt=generation_prompt)

    def prompt_ids(self, messages: list[dict]) -> list[int]:
        return self.tokenizer(self._render(messages, True), add_special_tokens=False)["input_ids"]

    def observation_ids(self, history: list[dict], turn_text: str, answers: list[dict]) -> list[int]:
        """The ids the template puts after the policy's turn: the close of the turn the policy did not write itself,
        the answers, the next generation prompt. Read off the template by rendering the conversation with a
        sentinel as the turn's content; the part of that close the policy already wrote (`turn_text` ends with it,
        e.g. `<|im_end|>`) is left out.

            Qwen2.5, turn '...</tool_call><|im_end|>', answer "56088" ->
            '\\n<|im_start|>user\\n<tool_response>\\n56088\\n</tool_response><|im_end|>\\n<|im_start|>assistant\\n'
        """
        text = self._render(history + [{"role": "assistant", "content": _SENTINEL}] + answers, True)
        suffix = text[text.rindex(_SENTINEL) + len(_SENTINEL):]
        return self.tokenizer(_after_overlap(turn_text, suffix), add_special_tokens=False)["input_ids"]


class ToRLRenderer:
    """The ToRL style on any prompt template: answers are text after the policy's "```output" (no chat template
    renders them). With `chat` (prompts rendered by the chat template) a turn also stops at the template's end of
    turn when that is not the eos (Qwen2.5(-Math) *base* tokenizers: eos <|endoftext|>, turns end with <|im_end|>;
    without it the policy would write on into a made-up user turn)."""

    def __init__(self, tokenizer, chat: bool = False):
        from data.templates import end_of_turn_token
        self.tokenizer = tokenizer
        end = end_of_turn_token(tokenizer, "chat") if chat else None
        self.stop: tuple[str, ...] = (TORL_STOP,) + ((end,) if end else ())

    def observation_ids(self, history: list[dict], turn_text: str, answers: list[dict]) -> list[int]:
        output = "\n".join(a["content"] for a in answers)
        return self.tokenizer(torl_observation(output), add_special_tokens=False)["input_ids"]


def _after_overlap(written: str, suffix: str) -> str:
    """`suffix` without its longest start that `written` already ends with.

        _after_overlap("x</tool_call><|im_end|>", "<|im_end|>\\n<|im_start|>") -> "\\n<|im_start|>"
        _after_overlap("x", "<|im_end|>\\n")                                    -> "<|im_end|>\\n"
    """
    for k in range(min(len(written), len(suffix)), 0, -1):
        if written.endswith(suffix[:k]):
            return suffix[k:]
    return suffix


@dataclass
class _Running:
    prompt_ids: list[int]
    history: list[dict]  # the conversation as messages (rendering the answers only)
    env: Any
    ids: list[int] = field(default_factory=list)
    mask: list[int] = field(default_factory=list)
    logprobs: list[float] = field(default_factory=list)
    info: dict[str, float] = field(default_factory=dict)
    done: bool = False
    finish: str = "stop"
    last_turn: str = ""
    reward: float | None = None


INFO_KEYS = ("turns", "tool_calls", "tool_errors", "tool_format_errors", "tool_timeouts", "tool_seconds", "observation_tokens",
             "observations_truncated", "cut_by_budget", "cut_by_turns")


def run_episodes(engine, renderer, starts: list[tuple[list[int], list[dict], Any]], params: SamplingParams,
                 limits: EpisodeLimits) -> list[Completion]:
    """One Completion per start (prompt ids, prompt messages, a reset environment), its `mask` 0 on the
    environment's tokens and `info` the episode's counts (INFO_KEYS, plus `env_reward` when the environment gave
    one). `params.n` is ignored (each start is one episode); `params.seed` seeds each turn (seed + turn)."""
    eps = [_Running(list(p), list(h), env, info={k: 0.0 for k in INFO_KEYS}) for p, h, env in starts]
    tok = renderer.tokenizer
    with ThreadPoolExecutor(max_workers=max(1, limits.workers)) as pool:
        for turn in range(limits.max_turns):
            active = [e for e in eps if not e.done]
            if not active:
                break
            left = [limits.max_tokens - len(e.ids) for e in active]
            width = max(left) if limits.max_turn_tokens is None else min(max(left), limits.max_turn_tokens)
            sp = replace(params, n=1, max_tokens=width, stop=tuple(params.stop) + tuple(renderer.stop),
                         seed=None if params.seed is None else params.seed + turn * 7919)
            outs = engine.generate([e.prompt_ids + e.ids for e in active], sp)
            stepping = []
            for e, (c,), room in zip(active, outs, left, strict=True):
                ids, lps = c.completion_ids[:room], c.logprobs[:room]
                e.ids += ids
                e.mask += [1] * len(ids)
                e.logprobs += lps
                e.info["turns"] += 1
                e.last_turn = tok.decode(ids, skip_special_tokens=False)
                if len(ids) >= room and not (c.finish_reason == "stop" and len(c.completion_ids) <= room):
                    e.done, e.finish = True, "length"  # the episode's budget is spent
                    e.info["cut_by_budget"] = 1.0
                else:
                    stepping.append(e)
            results = list(pool.map(lambda e: e.env.step(turn_text(tok, e.ids[len(e.ids) - _turn_len(e):])),
                                    stepping))
            for e, res in zip(stepping, results):
                for k, v in res.info.items():
                    e.info[k] = e.info.get(k, 0.0) + float(v)
                if res.reward is not None:
                    e.reward = res.reward
                if res.done:
                    e.done = True
                    continue
                if turn + 1 == limits.max_turns:
                    e.done, e.finish = True, "length"  # no turn left to read the answer
                    e.info["cut_by_turns"] = 1.0
                    continue
                obs = renderer.observation_ids(e.history, e.last_turn, res.messages)
                e.history += [{"role": "assistant", "content": turn_text(tok, e.ids[len(e.ids) - _turn_len(e):])}]
                e.history += res.messages
                if len(e.ids) + len(obs) >= limits.max_tokens:  # no room for the answer and a reply to it
                    e.done, e.finish = True, "length"
                    e.info["cut_by_budget"] = 1.0
                    continue
                e.ids += obs
                e.mask += [0] * len(obs)
                e.logprobs += [0.0] * len(obs)
                e.info["observation_tokens"] += len(obs)
    out = []
    for e in eps:
        info = dict(e.info)
        if e.reward is not None:
            info["env_reward"] = e.reward
        out.append(Completion(prompt_ids=e.prompt_ids, completion_ids=e.ids,
                              text=tok.decode(e.ids, skip_special_tokens=True), finish_reason=e.finish,
                              logprobs=e.logprobs, mask=e.mask, info=info))
    return out


def turn_text(tok, ids: list[int]) -> str:
    """What the environment reads of a turn: its text with special tokens kept (a template may make `<tool_call>` a
    special token), without the end-of-turn token the turn stopped at (eos, or pad after it)."""
    text = tok.decode(ids, skip_special_tokens=False)
    for end in (getattr(tok, "pad_token", None), getattr(tok, "eos_token", None)):
        while end and text.endswith(end):
            text = text[:-len(end)]
    return text


def _turn_len(e: _Running) -> int:
    """Tokens of the last policy turn: the trailing run of mask-1 tokens."""
    n = 0
    for m in reversed(e.mask):
        if not m:
            break
        n += 1
    return n


def start_episodes(rows: list[dict], n: int, make_env: Callable[[], Any], prompt: Callable[[dict, Any], tuple]
                   ) -> list[tuple[list[int], list[dict], Any]]:
    """n starts per row (a GRPO group), each with its own environment, reset from the row. `prompt(row, env)` ->
    (prompt ids, prompt messages) after the reset (which may extend the last user message, TRL's convention)."""
    starts = []
    for row in rows:
        for _ in range(n):
            env = make_env()
            extra = env.reset(row)
            r = {**row, "prompt": extend_prompt(row["prompt"], extra)}
            ids, messages = prompt(r, env)
            starts.append((ids, messages, env))
    return starts


def extend_prompt(prompt, extra: str | None):
    """The row's prompt with an environment's reset string appended to its last user message (TRL's convention)."""
    if not extra:
        return prompt
    if isinstance(prompt, str):
        return prompt + extra
    return prompt[:-1] + [{**prompt[-1], "content": prompt[-1]["content"] + extra}]


def episode_metrics(completions: list[Completion], seconds: float | None = None) -> dict[str, float]:
    """Per-step means over episodes of the counts in `Completion.info` (INFO_KEYS and whatever an environment
    reports), and the share cut by a limit.

        infos {turns 2, tool_calls 1}, {turns 1, tool_calls 0} -> tools/turns 1.5, tools/tool_calls 0.5
    """
    n = max(len(completions), 1)
    keys = list(INFO_KEYS) + sorted({k for c in completions for k in c.info} - set(INFO_KEYS))
    out = {f"tools/{k}": sum(c.info.get(k, 0.0) for c in completions) / n for k in keys}
    out["tools/cut_frac"] = sum(c.finish_reason == "length" for c in completions) / n
    if seconds is not None:
        out["time/episodes_s"] = seconds
    return out
