"""Build a tiny random Llama model + BPE tokenizer offline, for the vLLM engine tests (no hub, no downloads)."""
from __future__ import annotations

import os


def build_tiny_model(path: str, seed: int = 0) -> str:
    """Write a tokenizer (PreTrainedTokenizerFast over a `tokenizers` BPE) and a random float32 LlamaForCausalLM
    (hidden 64, 2 layers, 4 heads, vocab ~300) to `path`; return `path`.

    head_dim is set to 32 (not hidden/heads = 16): vLLM's CPU attention backend supports head sizes
    32, 64, 80, ..., 512 only ("Unsupported CPU attention configuration: head_dim=16")."""
    import torch
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    corpus = ["A conversation between User and Assistant. User: 3+4*5 = ? Assistant: <think> 4*5=20, 3+20=23 "
              "</think> <answer> 23 </answer>", "User: 12-7 = ? Assistant: <think> 12-7=5 </think> <answer> 5 </answer>"
              ] * 50
    tok = Tokenizer(models.BPE(unk_token=None, byte_fallback=False))
    tok.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.Digits(individual_digits=True),
                                                 pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)])
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=300, special_tokens=["<|endoftext|>", "<|pad|>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(corpus, trainer)
    tok.add_tokens([AddedToken(t, special=False, normalized=False) for t in ["<think>", "</think>", "<answer>",
                                                                             "</answer>"]])
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|endoftext|>", pad_token="<|pad|>",
                                   bos_token=None)
    os.makedirs(path, exist_ok=True)
    fast.save_pretrained(path)
    torch.manual_seed(seed)
    cfg = LlamaConfig(vocab_size=len(fast), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=4, head_dim=32, max_position_embeddings=256,
                      eos_token_id=fast.eos_token_id, pad_token_id=fast.pad_token_id, bos_token_id=None,
                      tie_word_embeddings=True, torch_dtype="float32")
    model = LlamaForCausalLM(cfg)
    # A random init at std 0.02 gives a near-uniform next-token distribution; scale the embeddings up so the
    # distribution is peaked enough for greedy decoding to be well defined (no near ties) and EOS to be reachable.
    with torch.no_grad():
        model.model.embed_tokens.weight.mul_(4.0)
    model.save_pretrained(path)
    return path


def perturbed_copy(path: str, seed: int, scale: float = 0.02):
    """The model at `path` (float32, eval) with every weight moved by scale * N(0, 1): new weights to push."""
    import torch
    from transformers import AutoModelForCausalLM
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval()
    torch.manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * scale)
    return model


def worst_logprob_gap(model, groups, temperature: float = 1.0) -> float:
    """Largest |engine logprob - transformers logprob| over the completions of `groups` under `model`."""
    import torch
    worst = 0.0
    for group in groups:
        for c in group:
            ids = torch.tensor([list(c.prompt_ids) + list(c.completion_ids)])
            with torch.no_grad():
                logits = model(ids).logits[0, len(c.prompt_ids) - 1:-1].float()
            ref = torch.log_softmax(logits / temperature, -1).gather(-1, torch.tensor(c.completion_ids)[:, None])[:, 0]
            worst = max(worst, (ref - torch.tensor(c.logprobs)).abs().max().item())
    return worst
