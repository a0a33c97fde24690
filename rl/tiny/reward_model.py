"""The tiny world's reward model (`tiny-rm`): a small Llama sequence classifier trained by the project on preference
pairs of the general prompts (data/general_tasks.py: the polite, concise reply preferred to a rude, a verbose, an
off-topic, a junk or a garbled one), with the tiny tokenizer and its chat template; R1's helpfulness reward model in miniature.

    python -m rl.tiny.reward_model      # prints the cached path (built once: ~15 s of CPU on one thread)

Training: Bradley-Terry loss -log sigmoid(r(chosen) - r(rejected)) on pairs of the training prompts, AdamW, one
torch thread (reproducible, as rl/tiny/build.py's pretraining). Held-out pairs use the test prompts (disjoint).
Each pair is rendered exactly as rewards/models/reward_model.py renders a (prompt, completion): the chat template
over a user turn and an assistant turn.
"""
from __future__ import annotations

import hashlib
import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from data.general_tasks import general_split, preference_pairs
from rl.tiny.build import PRETRAIN_THREADS, NAMED_SPECS, build_tiny_model, default_cache_dir, publish_model_dir


@dataclass(frozen=True)
class TinyRMSpec:
    hidden_size: int = 64
    num_layers: int = 2
    num_heads: int = 2
    intermediate_size: int = 128
    num_train_prompts: int = 216
    num_test_prompts: int = 72
    num_pairs: int = 4000
    steps: int = 150
    batch_size: int = 16
    learning_rate: float = 3e-3
    seed: int = 0

    def key(self) -> str:
        """Hash of the settings and of the training pairs themselves (a change in data/general_tasks.py's writers
        is a new model, not a stale cache entry)."""
        train, _ = general_split(self.num_train_prompts, self.num_test_prompts, self.seed)
        pairs = preference_pairs(train, self.num_pairs, self.seed)
        return hashlib.sha256(json.dumps([asdict(self), pairs], sort_keys=True).encode()).hexdigest()[:12]


def render_pairs(tokenizer, pairs: list[dict]) -> tuple[list[list[int]], list[list[int]]]:
    """Token ids of (chosen, rejected) conversations, rendered as the reward_model reward renders them."""
    from rewards.models.reward_model import _messages

    def ids(prompt: str, response: str) -> list[int]:
        text = tokenizer.apply_chat_template(_messages(prompt, response), tokenize=False)
        return tokenizer(text, add_special_tokens=False)["input_ids"]
    return [ids(p["prompt"], p["chosen"]) for p in pairs], [ids(p["prompt"], p["rejected"]) for p in pairs]


def _batch(seqs: list[list[int]], pad: int) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(map(len, seqs))
    ids = torch.full((len(seqs), width), pad)
    mask = torch.zeros((len(seqs), width), dtype=torch.long)
    for i, s in enumerate(seqs):
        ids[i, :len(s)], mask[i, :len(s)] = torch.tensor(s), 1
    return ids, mask


def scores(model, tokenizer, seqs: list[list[int]], batch_size: int = 64) -> torch.Tensor:
    """The model's logit per token sequence (right-padded batches). [N]"""
    out = []
    with torch.no_grad():
        for s in range(0, len(seqs), batch_size):
            ids, mask = _batch(seqs[s:s + batch_size], tokenizer.pad_token_id)
            out.append(model(input_ids=ids, attention_mask=mask).logits[:, 0])
    return torch.cat(out)


def pair_accuracy(model, tokenizer, pairs: list[dict]) -> float:
    """Share of pairs whose chosen reply scores strictly above the rejected one."""
    chosen, rejected = render_pairs(tokenizer, pairs)
    return (scores(model, tokenizer, chosen) > scores(model, tokenizer, rejected)).float().mean().item()


def held_out_pairs(spec: TinyRMSpec, num: int = 400) -> list[dict]:
    """Pairs over the test prompts (none of them seen in training), their own seed."""
    _, test = general_split(spec.num_train_prompts, spec.num_test_prompts, spec.seed)
    return preference_pairs(test, num, spec.seed + 1)


def train_reward_model(spec: TinyRMSpec, tokenizer) -> tuple[torch.nn.Module, list[float]]:
    """A randomly initialised one-output Llama classifier trained on `spec.num_pairs` training pairs; (model in
    eval mode, the loss every 50 steps). One torch thread."""
    from transformers import LlamaConfig, LlamaForSequenceClassification

    threads = torch.get_num_threads()
    torch.set_num_threads(PRETRAIN_THREADS)
    try:
        torch.manual_seed(spec.seed)
        config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=spec.hidden_size,
                             intermediate_size=spec.intermediate_size, num_hidden_layers=spec.num_layers,
                             num_attention_heads=spec.num_heads, num_key_value_heads=spec.num_heads,
                             max_position_embeddings=256, num_labels=1, pad_token_id=tokenizer.pad_token_id,
                             bos_token_id=None, eos_token_id=tokenizer.eos_token_id, dtype="float32")
        model = LlamaForSequenceClassification(config)
        train, _ = general_split(spec.num_train_prompts, spec.num_test_prompts, spec.seed)
        chosen, rejected = render_pairs(tokenizer, preference_pairs(train, spec.num_pairs, spec.seed))
        gen = torch.Generator().manual_seed(spec.seed)
        opt = torch.optim.AdamW(model.parameters(), lr=spec.learning_rate, weight_decay=0.01)
        model.train()
        losses = []
        for step in range(spec.steps):
            idx = torch.randint(len(chosen), (spec.batch_size,), generator=gen).tolist()
            ids, mask = _batch([chosen[i] for i in idx] + [rejected[i] for i in idx], tokenizer.pad_token_id)
            r = model(input_ids=ids, attention_mask=mask).logits[:, 0]  # [2B]
            loss = -torch.nn.functional.logsigmoid(r[:spec.batch_size] - r[spec.batch_size:]).mean()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            opt.zero_grad(set_to_none=True)
            if step % 50 == 0 or step == spec.steps - 1:
                losses.append(round(loss.item(), 4))
        model.eval()
        return model, losses
    finally:
        torch.set_num_threads(threads)


def tiny_tokenizer():
    from transformers import AutoTokenizer
    return AutoTokenizer.from_pretrained(build_tiny_model(NAMED_SPECS["tiny"]))


def build_tiny_reward_model(spec: TinyRMSpec = TinyRMSpec(), cache_dir: Path | None = None) -> Path:
    """Path of the trained reward model (HF dir: config, safetensors, tokenizer with chat template, tiny_rm.json
    with the losses and the held-out pair accuracy), built once into $R1_CACHE/tiny/rm-<key>."""
    out = Path(cache_dir or default_cache_dir()) / "tiny" / f"rm-{spec.key()}"
    if out.exists():
        return out
    t0 = time.time()
    tokenizer = tiny_tokenizer()
    model, losses = train_reward_model(spec, tokenizer)
    accuracy = pair_accuracy(model, tokenizer, held_out_pairs(spec))
    return publish_model_dir(out, model, tokenizer, "tiny_rm.json",
                             {"spec": asdict(spec), "losses": losses, "held_out_pair_accuracy": accuracy,
                              "build_s": round(time.time() - t0, 1)})


if __name__ == "__main__":
    print(build_tiny_reward_model())
