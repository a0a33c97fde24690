"""Measure a rollout engine: rollout tokens/s and the cost of one weight push; the same workload for both engines.

    HF_HUB_OFFLINE=1 python -m rl.rollout.engines.bench                       # vLLM, tests' tiny random model (tmp dir)
    HF_HUB_OFFLINE=1 python -m rl.rollout.engines.bench --model PATH          # any HF model dir, e.g. rl.tiny's base model
    HF_HUB_OFFLINE=1 python -m rl.rollout.engines.bench --engine hf --model PATH   # the transformers engine, same prompts
    ... --prompts 16 --group 8 --max-tokens 64 --temperature 1.0 --repeats 3 --pushes 5 --seed-mode per_request

Prompts are fixed ("User: a+b = ? Assistant:" with a, b from a seeded generator) and decoding runs to EOS or
max_tokens, so the same settings give the same workload to the HF engine. Prints one JSON line:
completion tokens/s (sum of completion lengths / wall time of engine.generate, median of --repeats after one warm-up),
the mean completion length, and the median seconds of `engine.update_weights(model)` (gather + reload + cache reset).
"""
from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
import tempfile
import time


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=None, help="HF model dir (default: the tests' tiny random Llama)")
    ap.add_argument("--prompts", type=int, default=16)
    ap.add_argument("--group", type=int, default=8, help="completions per prompt (G)")
    ap.add_argument("--max-tokens", type=int, default=64)
    ap.add_argument("--temperature", type=float, default=1.0)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--pushes", type=int, default=5)
    ap.add_argument("--dtype", default="float32")
    ap.add_argument("--engine", choices=["vllm", "hf"], default="vllm")
    ap.add_argument("--seed-mode", choices=["per_step", "per_request"], default="per_step",
                    help="vLLM: one reseed per call (fast path) or one seed per prompt (per-request generators)")
    args = ap.parse_args(argv)

    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from rl.core.episode import SamplingParams

    path = args.model
    if path is None:
        sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "tests", "vllm"))
        from tiny_model import build_tiny_model
        path = build_tiny_model(os.path.join(tempfile.mkdtemp(prefix="vllm_bench_"), "model"))
    tok = AutoTokenizer.from_pretrained(path)
    rng = random.Random(0)
    prompts = [tok(f"User: {rng.randint(0, 99)}+{rng.randint(0, 99)} = ? Assistant:")["input_ids"]
               for _ in range(args.prompts)]
    params = SamplingParams(n=args.group, temperature=args.temperature, max_tokens=args.max_tokens, seed=0)

    t0 = time.perf_counter()
    model = AutoModelForCausalLM.from_pretrained(path, dtype=getattr(torch, args.dtype))
    if args.engine == "vllm":
        from rl.rollout.engines.vllm import VLLMEngine
        engine = VLLMEngine(path, tok, dtype=args.dtype, seed_mode=args.seed_mode,
                            max_model_len=max(256, max(map(len, prompts)) + args.max_tokens))
    else:
        from rl.rollout.engines.hf import HFEngine
        engine = HFEngine(model, tok)
    start_s = time.perf_counter() - t0
    engine.generate(prompts, params)  # warm-up
    rates, lengths = [], []
    for r in range(args.repeats):
        t = time.perf_counter()
        groups = engine.generate(prompts, SamplingParams(**{**params.__dict__, "seed": r + 1}))
        dt = time.perf_counter() - t
        ntok = sum(len(c.completion_ids) for g in groups for c in g)
        rates.append(ntok / dt)
        lengths.append(ntok / (args.prompts * args.group))

    pushes = []
    for _ in range(args.pushes):
        with torch.no_grad():
            for p in model.parameters():
                p.add_(torch.randn_like(p) * 1e-3)
        t = time.perf_counter()
        engine.update_weights(model)
        pushes.append(time.perf_counter() - t)
    engine.close()
    print(json.dumps({
        "engine": args.engine, "seed_mode": args.seed_mode if args.engine == "vllm" else None, "model": path, "params_M": round(sum(p.numel() for p in model.parameters()) / 1e6, 3),
        "prompts": args.prompts, "group": args.group, "max_tokens": args.max_tokens,
        "temperature": args.temperature, "engine_start_s": round(start_s, 2),
        "completion_tokens_per_s": round(statistics.median(rates), 1),
        "tokens_per_s_all": [round(x, 1) for x in rates],
        "mean_completion_len": round(statistics.mean(lengths), 1),
        "push_s_median": round(statistics.median(pushes), 4), "push_s_all": [round(x, 4) for x in pushes],
        "torch_threads": torch.get_num_threads(),
    }))


if __name__ == "__main__":
    main()
