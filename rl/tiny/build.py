"""Build the tiny tokenizer, tiny decoders and the tiny *base model*, offline, cached by their settings.

    python -m rl.tiny.build     # prints the path of the cached base model; installs the shipped copy
                                # (rl/tiny/shipped.py) or, when that does not match this builder, builds it
                                # (1,200 steps: 4-5 min on 2 quiet cores, 20+ min on a loaded machine)

The base model is a small Llama-architecture decoder (HF format, safetensors) trained from random initialisation by
`pretrain()` below on the corpus of rl/tiny/corpus.py: it has seen the R1 format sometimes and careful arithmetic
less often than sloppy arithmetic, so it starts with partial skill, as real base models do. Everything is deterministic
in the seed and written atomically (a half-built cache entry is never used).
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from data.tasks import arithmetic_dataset
from rl.tiny.corpus import base_corpus

SPECIAL = ["<|endoftext|>", "<|pad|>"]
TAGS = ["<think>", "</think>", "<answer>", "</answer>"]
CHAT_TEMPLATE = (
    "{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}"
    "{% if add_generation_prompt %}assistant:{% endif %}"
)


@dataclass(frozen=True)
class TinySpec:
    """Everything that determines a tiny base model (its hash names the cache entry)."""

    hidden_size: int = 128
    num_layers: int = 3
    num_heads: int = 4
    intermediate_size: int = 256
    vocab_size: int = 1000
    max_positions: int = 256
    num_docs: int = 40_000
    p_careful: float = 0.3
    p_strict: float = 0.3
    steps: int = 1200
    batch_size: int = 64
    learning_rate: float = 2e-3
    seed: int = 0
    pretrain: bool = True  # False: a randomly initialised model (tests, students before distillation)
    world: str = "arithmetic"  # arithmetic (data/tasks.py, rl/tiny/corpus.py) | code (data/code_tasks.py, code_corpus.py)
    p_check: float = 0.0  # code world: share of the careful writers who first write the bug, then check and redo
    p_mixed: float = 0.0  # arithmetic world: share of the careful writers whose steps are in Chinese (rl/tiny/corpus.py)
    p_tool: float = 0.0  # tools world: share of the writers who call python instead of guessing (tools_corpus.py)

    def key(self) -> str:
        fields = asdict(self)
        for later, default in (("world", "arithmetic"), ("p_check", 0.0), ("p_mixed", 0.0),
                               ("p_tool", 0.0)):  # fields added later: at their defaults
            if fields[later] == default:  # they leave the key (and the caches built before them) as it was
                del fields[later]
        return hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()[:12]


# The student of the miniature pipeline: smaller than TinySpec() (~0.37M vs 0.55M parameters), same corpus settings,
# hence the same tokenizer (distillation needs it). head_dim 32: vLLM's CPU attention needs it.
TINY_STUDENT = dict(hidden_size=96, num_layers=3, num_heads=3, intermediate_size=192)
# The code world's base (`tiny-code`): the base's sizes, pretrained on rl/tiny/code_corpus.py; one writer in four is
# careful, and careful writers get there by checking and redoing (a longer chain: with p_check 0.8 the few direct
# careful writers took over once every answer was right, and the chains shortened again). Fewer distinct problems
# exist than in the arithmetic world, so fewer documents and steps suffice.
TINY_CODE = dict(world="code", p_careful=0.25, p_check=1.0, num_docs=20_000, steps=800)
# The arithmetic base and its student read one corpus (hence one tokenizer), in which the careful writers name their
# steps in Chinese: what R1-Zero learns from them mixes languages (R1 §2.3.2), which the R1 stage (a cold start on
# English traces, then language_consistency) removes. With 3 careful writers in 5 mixing, R1-Zero's greedy chains
# mixed in only 2.5% of the test problems: it learned the careful method from the English minority.
TINY_CORPUS = dict(p_mixed=1.0)
# The tool world's base (`tiny-tools`): the base's sizes, pretrained on rl/tiny/tools_corpus.py, where one writer in
# five calls python (ToRL style) and the others guess; half write the strict R1 format.
TINY_TOOLS = dict(world="tools", p_tool=0.2, p_strict=0.5, num_docs=20_000, steps=800)
NAMED_SPECS = {
    "tiny": TinySpec(**TINY_CORPUS),
    "tiny-init": TinySpec(**TINY_CORPUS, pretrain=False),
    "tiny-student": TinySpec(**TINY_STUDENT, **TINY_CORPUS),
    "tiny-student-init": TinySpec(**TINY_STUDENT, **TINY_CORPUS, pretrain=False),
    "tiny-code": TinySpec(**TINY_CODE),
    "tiny-tools": TinySpec(**TINY_TOOLS),
}


def default_cache_dir() -> Path:
    return Path(os.environ.get("R1_CACHE", Path(__file__).resolve().parents[2] / ".cache"))


def build_tokenizer(texts: list[str], vocab_size: int):
    """Byte-level BPE trained on `texts`, digits split one per token, R1 tags as single (non-special) tokens.

    Merges may cross spaces (no word pre-split), so the constant R1-Zero template compresses to a few tokens and a
    tiny model spends its compute on the arithmetic."""
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.Digits(individual_digits=True),
                                                 pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
    tok.decoder = decoders.ByteLevel()
    tok.add_tokens([AddedToken(t, special=False, normalized=False) for t in TAGS])
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=SPECIAL,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(texts, trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token=SPECIAL[0], pad_token=SPECIAL[1])
    fast.chat_template = CHAT_TEMPLATE
    return fast


def build_model(tokenizer, spec: TinySpec):
    """A randomly initialised Llama decoder sized by `spec`."""
    from transformers import GenerationConfig, LlamaConfig, LlamaForCausalLM

    torch.manual_seed(spec.seed)
    config = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=spec.hidden_size, intermediate_size=spec.intermediate_size,
        num_hidden_layers=spec.num_layers, num_attention_heads=spec.num_heads, num_key_value_heads=spec.num_heads,
        max_position_embeddings=spec.max_positions, tie_word_embeddings=True, bos_token_id=None,
        eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id, dtype="float32",
    )
    model = LlamaForCausalLM(config)
    model.generation_config = GenerationConfig(eos_token_id=tokenizer.eos_token_id,
                                               pad_token_id=tokenizer.pad_token_id)
    return model


PRETRAIN_THREADS = 1  # torch threads while pretraining: the same weights whoever builds (see `pretrain`)


def pretrain(model, tokenizer, docs: list[tuple[str, str]], spec: TinySpec, log_every: int = 100) -> list[float]:
    """Next-token training on (prompt, completion) docs (AdamW, cosine schedule), prompt and completion tokenized
    apart as in RL, EOS after the completion. Returns the loss every `log_every` steps.

    Runs on PRETRAIN_THREADS (1) torch threads whatever the caller set: CPU kernels split their sums by the thread
    count, and 1,200 steps of AdamW turn those last bits into different models (on 2026-12-06 a 2-thread and a
    1-thread build of `tiny` differed by up to 0.27 in a weight). With one thread a build is reproducible, so the
    shipped copies (rl/tiny/shipped.py) are exactly what a rebuild gives."""
    threads = torch.get_num_threads()
    torch.set_num_threads(PRETRAIN_THREADS)
    try:
        return _pretrain(model, tokenizer, docs, spec, log_every)
    finally:
        torch.set_num_threads(threads)


def _pretrain(model, tokenizer, docs, spec, log_every) -> list[float]:
    gen = torch.Generator().manual_seed(spec.seed)
    prompts = tokenizer([p for p, _ in docs], add_special_tokens=False)["input_ids"]
    completions = tokenizer([c for _, c in docs], add_special_tokens=False)["input_ids"]
    encoded = [p + c + [tokenizer.eos_token_id] for p, c in zip(prompts, completions)]
    opt = torch.optim.AdamW(model.parameters(), lr=spec.learning_rate, weight_decay=0.01, betas=(0.9, 0.95))
    model.train()
    losses = []
    t0 = time.time()
    for step in range(spec.steps):
        lr = spec.learning_rate * min(1.0, (step + 1) / 100) * 0.5 * (1 + math.cos(math.pi * step / spec.steps))
        for g in opt.param_groups:
            g["lr"] = lr
        idx = torch.randint(len(encoded), (spec.batch_size,), generator=gen).tolist()
        seqs = [encoded[i] for i in idx]
        width = max(map(len, seqs))
        ids = torch.full((len(seqs), width), tokenizer.pad_token_id)
        labels = torch.full((len(seqs), width), -100)
        for row, s in enumerate(seqs):
            ids[row, :len(s)] = torch.tensor(s)
            labels[row, :len(s)] = torch.tensor(s)
        loss = model(input_ids=ids, attention_mask=(labels != -100).long(), labels=labels).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        if step % log_every == 0 or step == spec.steps - 1:
            losses.append(round(loss.item(), 4))
            print(progress_line(step + 1, spec.steps, loss.item(), time.time() - t0), flush=True)
    model.eval()
    return losses


def progress_line(done: int, total: int, loss: float, elapsed_s: float) -> str:
    """One log line of the base build, with the steps done of all and the time left at the rate so far:

    >>> progress_line(300, 1200, 0.8213, 60.0)
    '[tiny base] step 300/1200 loss 0.8213 (60s elapsed, ~180s left)'
    """
    left = elapsed_s / done * (total - done) if done else float("nan")
    return f"[tiny base] step {done}/{total} loss {loss:.4f} ({elapsed_s:.0f}s elapsed, ~{left:.0f}s left)"


def cached_path(spec: TinySpec, cache_dir: Path | None = None) -> Path:
    """Where the model of `spec` is (or will be) cached: $R1_CACHE/tiny/base-<key> (init-<key> when not pretrained)."""
    return Path(cache_dir or default_cache_dir()) / "tiny" / f"{'base' if spec.pretrain else 'init'}-{spec.key()}"


def build_tiny_model(spec: TinySpec = NAMED_SPECS["tiny"], cache_dir: Path | None = None, force: bool = False) -> Path:
    """Path of an HF model dir (config, safetensors, tokenizer) for `spec`, built once and cached atomically."""
    out = cached_path(spec, cache_dir)
    cache = out.parent
    if out.exists() and not force:
        return out
    why = "a forced rebuild"
    if spec.pretrain and not force:  # the shipped, hash-checked copy of a named model (rl/tiny/shipped.py)
        from rl.tiny.shipped import install_shipped
        installed, why = install_shipped(spec, out)
        if installed is not None:
            print(f"[tiny build] {out.name}: the shipped copy (rl/tiny/shipped/, sha256 checked), cached in {cache}",
                  flush=True)
            return installed
    t0 = time.time()
    torch_threads = PRETRAIN_THREADS if spec.pretrain else torch.get_num_threads()
    if spec.pretrain:
        print(f"[tiny build] building {out.name} once (cached in {cache}; {why}): {spec.steps} pretraining steps of "
              f"a {spec.hidden_size}-wide, {spec.num_layers}-layer model; the lines below say the time left",
              flush=True)
    corpus = pretraining_corpus(spec)
    tokenizer = world_tokenizer(spec, corpus)
    model = build_model(tokenizer, spec)
    losses = pretrain(model, tokenizer, corpus, spec) if spec.pretrain else []
    return publish_model_dir(out, model, tokenizer, "tiny_spec.json",
                             {"spec": asdict(spec), "pretrain_losses": losses, "build_s": round(time.time() - t0, 1),
                              "threads": torch_threads}, force)


def world_corpus(spec: TinySpec) -> list[tuple[str, str]]:
    """The pretraining documents of `spec.world`. The corpus covers the world broadly: its own question draw (seed + 1),
    not the RL splits, so some RL test questions appear in it, mostly with wrong solutions (as in real pretraining)."""
    if spec.world == "arithmetic":
        train, _ = arithmetic_dataset(num_train=2000, num_test=0, seed=spec.seed + 1)
        return base_corpus([r["prompt"] for r in train], spec.num_docs, spec.seed, spec.p_careful, spec.p_strict,
                           spec.p_mixed)
    if spec.world == "code":
        from data.code_tasks import code_dataset
        from rl.tiny.code_corpus import code_corpus
        train, _ = code_dataset(num_train=400, num_test=0, seed=spec.seed + 1)
        return code_corpus([r["prompt"] for r in train], spec.num_docs, spec.seed, spec.p_careful, spec.p_strict,
                           spec.p_check)
    raise ValueError(f"tiny model: unknown world {spec.world!r}; valid: arithmetic, code")


def tools_world_corpus(spec: TinySpec) -> list[tuple[str, str]]:
    """The tool world's documents (rl/tiny/tools_corpus.py) over its own question draw (seed + 1), as world_corpus."""
    from data.tool_tasks import tool_dataset
    from rl.tiny.tools_corpus import tools_corpus
    train, _ = tool_dataset(num_train=4000, num_test=0, seed=spec.seed + 1)
    return tools_corpus([r["prompt"] for r in train], spec.num_docs, spec.seed, spec.p_tool, spec.p_strict)


# Worlds added after the first models were shipped: (their corpus, the strings their tokenizer keeps as one token
# each). They live outside the functions whose source fingerprints the shipped copies (rl/tiny/shipped.py), so adding
# a world leaves the shipped models current. The tool world keeps "```output" (the ToRL stop string) whole: an
# episode's turn ends with that token and the inserted output starts a token of its own, as in the corpus.
LATER_WORLDS = {"tools": (tools_world_corpus, ("```output",))}


def pretraining_corpus(spec: TinySpec) -> list[tuple[str, str]]:
    """The documents of any world: `world_corpus` for the first ones, LATER_WORLDS for the others."""
    if spec.world in LATER_WORLDS:
        return LATER_WORLDS[spec.world][0](spec)
    if spec.world not in ("arithmetic", "code"):
        raise ValueError(f"tiny model: unknown world {spec.world!r}; valid: arithmetic, code, "
                         f"{', '.join(LATER_WORLDS)}")
    return world_corpus(spec)


def world_tokenizer(spec: TinySpec, corpus: list[tuple[str, str]]):
    """`build_tokenizer` on the corpus, plus the world's whole-token strings (LATER_WORLDS) after training."""
    tokenizer = build_tokenizer([p + c for p, c in corpus], spec.vocab_size)
    extra = LATER_WORLDS[spec.world][1] if spec.world in LATER_WORLDS else ()
    if extra:
        from tokenizers import AddedToken
        tokenizer.add_tokens([AddedToken(t, special=False, normalized=False) for t in extra])
    return tokenizer


def publish_model_dir(out: Path, model, tokenizer, record_file: str, record: dict, force: bool = False) -> Path:
    """Save model + tokenizer + a JSON record into a temporary sibling of `out`, then rename it into place (a
    half-written cache entry is never visible); if another process published `out` first, keep theirs."""
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.parent / f".tmp-{out.name}-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    from rl.train.rundir import share_file_modes
    share_file_modes(tmp)  # safetensors writes 0600: a shared cache must be readable like its other files
    (tmp / record_file).write_text(json.dumps(record, indent=1))
    if force:
        shutil.rmtree(out, ignore_errors=True)
    try:
        os.replace(tmp, out)
    except OSError:  # another process finished first: keep theirs
        shutil.rmtree(tmp, ignore_errors=True)
    return out


if __name__ == "__main__":
    print(build_tiny_model())
