"""`tiny-chat`: the tiny base fine-tuned on general replies beside its own arithmetic corpus, the policy of the
tiny all-scenario RL stage (recipes/tiny/r1_all_scenarios.yaml). A stand-in for R1's stage 3 (the SFT that mixes
reasoning traces with non-reasoning data), NOT the rejection-sampling SFT itself: the general replies come from
data/general_tasks.py's writers, most of them rude (as the base's arithmetic writers are mostly sloppy), so the model
answers a general prompt rudely under greedy decoding but samples the polite, concise reply often enough for a
reward model to have signal.

    python -m rl.tiny.chat          # prints the cached path: the shipped copy (rl/tiny/shipped/tiny-chat/), or
                                    # built once (500 steps on one thread: 80 s of CPU, 6 min on the loaded machine)
    python -m rl.tiny.chat --ship   # re-ship the cached build with its key, code fingerprint and sha256s

Reproducible as the other tiny builds: one torch thread (rl/tiny/build.py `pretrain`), everything seeded.
"""
from __future__ import annotations

import random
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from data.general_tasks import general_prompt, general_split, in_format, write_reply
from data.tasks import arithmetic_dataset
from data.templates import render_prompt
from rl.tiny.build import NAMED_SPECS, TinySpec, build_tiny_model, default_cache_dir, publish_model_dir, pretrain
from rl.tiny.corpus import base_corpus


@dataclass(frozen=True)
class TinyChatSpec:
    num_docs: int = 6000
    general_frac: float = 0.5  # the rest: the tiny base's own arithmetic documents (its skill is kept)
    # reply qualities of the general documents: good (polite, concise), rude, verbose, off_topic
    p_good: float = 0.2
    p_rude: float = 0.5
    p_verbose: float = 0.15
    p_strict: float = 0.0  # general replies in <think> ... </think> <answer> ... </answer>; else the answer tag, or bare
    steps: int = 500
    batch_size: int = 32
    learning_rate: float = 2e-3
    seed: int = 0

    def key(self) -> str:
        import hashlib
        import json
        # the settings, the base, and the documents themselves (a change in a writer is a new model)
        record = [asdict(self), NAMED_SPECS["tiny"].key(), chat_corpus(self)]
        return hashlib.sha256(json.dumps(record, sort_keys=True).encode()).hexdigest()[:12]


def chat_corpus(spec: TinyChatSpec) -> list[tuple[str, str]]:
    """(prompt, completion) documents: `general_frac` general replies to the 216 training prompts (the test
    prompts never appear), the rest arithmetic documents of the tiny base's own corpus settings."""
    rng = random.Random(spec.seed)
    train, _ = general_split(seed=0)
    tiny = NAMED_SPECS["tiny"]
    questions = [r["prompt"] for r in arithmetic_dataset(num_train=2000, num_test=0, seed=tiny.seed + 1)[0]]
    n_general = round(spec.num_docs * spec.general_frac)
    docs = base_corpus(questions, spec.num_docs - n_general, spec.seed + 1, tiny.p_careful, tiny.p_strict,
                       tiny.p_mixed)
    for _ in range(n_general):
        kind, name, item = rng.choice(train)
        u = rng.random()
        quality = ("good" if u < spec.p_good else "rude" if u < spec.p_good + spec.p_rude
                   else "verbose" if u < spec.p_good + spec.p_rude + spec.p_verbose else "off_topic")
        problem = f"{rng.randint(1, 9)} {rng.choice('+-')} {rng.randint(1, 9)} * {rng.randint(1, 9)}"
        style = 0 if rng.random() < spec.p_strict else rng.randint(1, 2)
        docs.append((render_prompt(general_prompt(kind, name, item), "r1_zero"),
                     in_format(write_reply(kind, name, item, quality, problem), style)))
    rng.shuffle(docs)
    return docs


def build_tiny_chat(spec: TinyChatSpec = TinyChatSpec(), cache_dir: Path | None = None) -> Path:
    """Path of `tiny-chat` (HF dir + tiny_chat.json with the losses), fine-tuned from the tiny base once into
    $R1_CACHE/tiny/chat-<key>."""
    from transformers import AutoModelForCausalLM, AutoTokenizer
    out = Path(cache_dir or default_cache_dir()) / "tiny" / f"chat-{spec.key()}"
    if out.exists():
        return out
    installed, why = install_shipped_chat(spec, out)
    if installed is not None:
        print(f"[tiny chat] {out.name}: the shipped copy (rl/tiny/shipped/tiny-chat/, sha256 checked)", flush=True)
        return installed
    print(f"[tiny chat] not using a shipped copy: {why}", flush=True)
    t0 = time.time()
    base = build_tiny_model(NAMED_SPECS["tiny"], cache_dir)
    tokenizer = AutoTokenizer.from_pretrained(base)
    model = AutoModelForCausalLM.from_pretrained(base, dtype="float32")
    schedule = TinySpec(steps=spec.steps, batch_size=spec.batch_size, learning_rate=spec.learning_rate,
                        seed=spec.seed)  # what pretrain reads: steps, batch size, learning rate, seed
    print(f"[tiny chat] fine-tuning the tiny base on general replies + arithmetic once ({spec.steps} steps, cached "
          f"in {out.parent})", flush=True)
    losses = pretrain(model, tokenizer, chat_corpus(spec), schedule, log_every=50)
    return publish_model_dir(out, model, tokenizer, "tiny_chat.json",
                             {"spec": asdict(spec), "losses": losses, "build_s": round(time.time() - t0, 1)})


SHIPPED_CHAT = Path(__file__).resolve().parent / "shipped" / "tiny-chat"  # + SHIPPED.json: key, builder, sha256s


def chat_fingerprint(spec: TinyChatSpec) -> str:
    """sha256 (16 hex) of what determines the weights: the spec key (settings, the base's key, the documents), the
    fine-tuning code, and the base's own builder fingerprint (rl/tiny/shipped.py)."""
    import hashlib
    import inspect

    from rl.tiny import build
    from rl.tiny.shipped import builder_fingerprint
    h = hashlib.sha256(spec.key().encode())
    for fn in (chat_corpus, build_tiny_chat, build.pretrain, build._pretrain):
        h.update(inspect.getsource(fn).encode())
    h.update(builder_fingerprint(NAMED_SPECS["tiny"]).encode())
    return h.hexdigest()[:16]


def install_shipped_chat(spec: TinyChatSpec, out: Path, src: Path = SHIPPED_CHAT) -> tuple[Path | None, str]:
    """Copy the shipped tiny-chat into the cache dir `out` when its key, fingerprint and file hashes all match the
    code at hand: (out, ""), else (None, why not)."""
    import json
    import os
    import shutil

    from rl.tiny.shipped import sha256_file
    record = src / "SHIPPED.json"
    if not record.is_file():
        return None, f"no {record}"
    entry = json.loads(record.read_text())
    if entry.get("key") != spec.key() or entry.get("builder") != chat_fingerprint(spec):
        return None, "the shipped copy was made by other settings or code: re-ship with python -m rl.tiny.chat --ship"
    for name, digest in entry["files"].items():
        if not (src / name).is_file() or sha256_file(src / name) != digest:
            return None, f"shipped file {src / name} is missing or does not match its sha256"
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.parent / f".tmp-{out.name}-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(src, tmp, ignore=shutil.ignore_patterns("SHIPPED.json"))
    try:
        os.replace(tmp, out)
    except OSError:  # another process published it first
        shutil.rmtree(tmp, ignore_errors=True)
    return out, ""


def ship_chat(spec: TinyChatSpec = TinyChatSpec(), dst: Path = SHIPPED_CHAT) -> Path:
    """Copy the cached build (built first when missing) into rl/tiny/shipped/tiny-chat/ with its SHIPPED.json."""
    import json
    import shutil

    from rl.tiny.shipped import sha256_file
    built = build_tiny_chat(spec)
    shutil.rmtree(dst, ignore_errors=True)
    shutil.copytree(built, dst)
    files = {f.name: sha256_file(f) for f in sorted(dst.iterdir()) if f.is_file()}
    (dst / "SHIPPED.json").write_text(json.dumps({"key": spec.key(), "builder": chat_fingerprint(spec),
                                                  "files": files}, indent=1, sort_keys=True) + "\n")
    return dst


if __name__ == "__main__":
    import sys
    print(ship_chat() if "--ship" in sys.argv[1:] else build_tiny_chat())


def held_out_general(model_path: str, rm_path: str, num: int = 72, max_new_tokens: int = 40) -> dict[str, float]:
    """Greedy replies of a policy to the held-out general prompts (the 72 test prompts, or the first `num`), judged
    as the all-scenario recipe judges them (the reward model on the part after </think>): {"rm_score": mean score,
    "polite_frac": share whose reply contains the good reply verbatim, "completion_len": mean tokens}."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from rewards import get_reward
    _, test = general_split(seed=0)
    test = test[:num]
    prompts = [general_prompt(*t) for t in test]
    tok = AutoTokenizer.from_pretrained(model_path)
    tok.padding_side = "left"
    model = AutoModelForCausalLM.from_pretrained(model_path, dtype="float32").eval()
    enc = tok([render_prompt(p, "r1_zero") for p in prompts], return_tensors="pt", padding=True,
              add_special_tokens=False)
    with torch.no_grad():
        out = model.generate(**enc, do_sample=False, max_new_tokens=max_new_tokens, pad_token_id=tok.pad_token_id)
    new = out[:, enc["input_ids"].shape[1]:]
    texts = tok.batch_decode(new, skip_special_tokens=True)
    lengths = [int((row != tok.pad_token_id).sum()) for row in new]
    scores = get_reward("reward_model", model=str(rm_path), mode="after_think")(texts, prompts=prompts)
    polite = [write_reply(*t, "good") in text for t, text in zip(test, texts)]
    return {"rm_score": sum(scores) / len(scores), "polite_frac": sum(polite) / len(polite),
            "completion_len": sum(lengths) / len(lengths)}
