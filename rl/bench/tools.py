"""Episodes per second with tool calls vs single-turn: the same engine, model, prompts and tokens (issue 27,
docs/tools.md "Cost of the round-trips").

    python -m rl.bench.tools                          # tiny-tools, the transformers engine, 64 episodes, best of 3
    python -m rl.bench.tools --engine vllm --json out.json

Workload: `--episodes` problems of the tool world (data/tool_tasks.py, test split), each prompt followed by the
opening of a ToRL call as the tiny-tools corpus writes it, up to the first digit (" <think> ```python\\nprint(" or
"...print(sum(["), so that every episode writes a program; greedy, the model writes the same program in every mode
(the environments read the first turn with that opening before it). Three modes:

- `single`: one generate call per episode and no stop string: the model writes on past "```output" and makes up
  the output and the answer itself (the tokens of a tool episode at the cost of a single-turn one);
- `two_turns`: the episode loop (rl/rollout/episodes/multi_turn.py) with an environment that answers at once (the
  row's value, nothing run): the cost of a second turn (stop, observation tokens, a second generate call over the
  episode so far);
- `python`: the episode loop with the sandboxed `python` tool (warm bubblewrap sandboxes, `--sandboxes`): the whole
  round trip.

Per mode: episodes/s (the fastest of `--repeats` timed runs after one warm-up run: other load only ever adds time),
policy tokens per episode, tool calls per episode and tool seconds per call. One process, one torch thread each
mode unless `--threads`.
"""
from __future__ import annotations

import argparse
import json
import time

import torch

MODES = ("single", "two_turns", "python")


def call_opening(question: str) -> str:
    """How a tiny-tools writer opens the call for `question` (rl/tiny/tools_corpus.py), up to the first digit.

        "What is 347 * 829?" -> ' <think> ```python\\nprint('
        "What is the sum of 12, 45, 78, 23, 91?" -> ' <think> ```python\\nprint(sum(['
    """
    from data.tool_tasks import tool_program
    program = tool_program(question)
    first_digit = next(i for i, ch in enumerate(program) if ch.isdigit())
    return " <think> ```python\n" + program[:first_digit]


class Opened:
    """An environment whose episode's prompt holds the opening of the first turn: it reads that turn with it."""

    def __init__(self, env, opening: str):
        self.env, self.opening, self.tools = env, opening, getattr(env, "tools", [])

    def reset(self, row: dict):
        return self.env.reset(row)

    def step(self, turn: str):
        turn, self.opening = self.opening + turn, ""
        return self.env.step(turn)


class AnswerAtOnce:
    """A ToRL environment that answers a call with the row's value without running anything."""

    tools: list = []

    def reset(self, row: dict) -> None:
        self.answer = row["answer"]

    def step(self, turn: str):
        from rl.rollout.episodes.environments import StepResult
        from rl.rollout.episodes.tools.parse import parse_torl
        if not parse_torl(turn).wants_tools:
            return StepResult(done=True)
        return StepResult([{"role": "tool", "content": f"{self.answer}\n"}], info={"tool_calls": 1.0})


def summarize(mode: str, seconds: list[float], completions: list) -> dict:
    """One mode's row: episodes/s from the fastest run, per-episode means from the last run's completions.

        summarize("python", [2.0, 1.6], [c1, c2])  # two episodes, fastest 1.6 s -> episodes_per_s 1.25
    """
    n = len(completions)
    calls = sum(c.info.get("tool_calls", 0.0) for c in completions)
    return {"mode": mode, "episodes": n, "episodes_per_s": round(n / min(seconds), 2),
            "runs_s": [round(s, 3) for s in seconds],
            "policy_tokens": round(sum(sum(c.mask) if c.mask is not None else len(c.completion_ids)
                                       for c in completions) / n, 1),
            "tool_calls": round(calls / n, 3),
            "tool_s_per_call": round(sum(c.info.get("tool_seconds", 0.0) for c in completions) / calls, 4)
            if calls else 0.0}


def run_mode(mode: str, engine, tok, rows: list[dict], prompts: list[list[int]], max_tokens: int, pool=None):
    """The mode's completions for `prompts` (one per row), greedy."""
    from rl.core.episode import SamplingParams
    from rl.rollout.episodes.environments.base import ToolEnvironment
    from rl.rollout.episodes.multi_turn import EpisodeLimits, ToRLRenderer, run_episodes
    from rl.rollout.episodes.tools.base import PythonTool
    params = SamplingParams(greedy=True, max_tokens=max_tokens, seed=0)
    if mode == "single":
        return [c for (c,) in engine.generate(prompts, params)]
    starts = []
    for row, ids in zip(rows, prompts):
        env = AnswerAtOnce() if mode == "two_turns" else ToolEnvironment([PythonTool(pool, stateful=False)], "torl")
        env = Opened(env, call_opening(row["prompt"]))
        env.reset(row)
        starts.append((ids, [], env))
    return run_episodes(engine, ToRLRenderer(tok), starts, params, EpisodeLimits(max_turns=3, max_tokens=max_tokens))


def bench(model: str = "tiny-tools", engine_kind: str = "hf", episodes: int = 64, repeats: int = 3,
          max_tokens: int = 64, sandboxes: int = 4, threads: int = 1, modes=MODES) -> dict:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from data.templates import render_prompt
    from data.tool_tasks import tool_dataset
    from rl.rollout.episodes.tools.base import SandboxPool
    from rl.tiny.sources import resolve_model_path
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    path = resolve_model_path(model)
    tok = AutoTokenizer.from_pretrained(path)
    if engine_kind == "hf":
        from rl.rollout.engines.hf import HFEngine
        engine = HFEngine(AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval(), tok)
    else:
        from rl.rollout.engines.vllm import VLLMEngine
        engine = VLLMEngine(path, tok, dtype="float32", seed=0, max_model_len=256)
    _, rows = tool_dataset(0, episodes, seed=0)
    prompts = [tok(render_prompt(r["prompt"], "r1_zero"), add_special_tokens=False)["input_ids"]
               + tok(call_opening(r["prompt"]), add_special_tokens=False)["input_ids"] for r in rows]
    pool = SandboxPool(sandboxes) if "python" in modes else None
    results = []
    try:
        for mode in modes:
            run_mode(mode, engine, tok, rows, prompts, max_tokens, pool)  # warm-up
            seconds, out = [], []
            for _ in range(repeats):
                t0 = time.perf_counter()
                out = run_mode(mode, engine, tok, rows, prompts, max_tokens, pool)
                seconds.append(time.perf_counter() - t0)
            results.append(summarize(mode, seconds, out))
            print(json.dumps(results[-1]), flush=True)
    finally:
        if pool is not None:
            pool.close()
        engine.close()
        torch.set_num_threads(before)
    return {"model": model, "engine": engine_kind, "threads": threads, "max_tokens": max_tokens,
            "sandboxes": sandboxes, "results": results}


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description="Episodes/s with tool calls vs single-turn (docs/tools.md).")
    ap.add_argument("--model", default="tiny-tools")
    ap.add_argument("--engine", default="hf", choices=("hf", "vllm"))
    ap.add_argument("--episodes", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--max-tokens", type=int, default=64)
    ap.add_argument("--sandboxes", type=int, default=4)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--modes", nargs="+", default=list(MODES), choices=MODES)
    ap.add_argument("--json", help="write the results here too")
    a = ap.parse_args(argv)
    out = bench(a.model, a.engine, a.episodes, a.repeats, a.max_tokens, a.sandboxes, a.threads, a.modes)
    if a.json:
        with open(a.json, "w") as fh:
            json.dump(out, fh, indent=1)
    return out


if __name__ == "__main__":
    main()
