"""The reward functions go to trl.GRPOTrainer unchanged: one training step on a tiny random model, offline."""
from __future__ import annotations

import math

import pytest


def _tiny_model(path):
    import torch
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    words = ["<eos>", "<pad>", "<unk>", "<think>", "</think>", "<answer>", "</answer>", "What", "is", "?", "+", "="]
    vocab = {w: i for i, w in enumerate(words + [str(d) for d in range(10)])}
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<eos>", pad_token="<pad>", unk_token="<unk>")
    fast.save_pretrained(path)
    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=len(vocab), hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                      num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=64,
                      eos_token_id=fast.eos_token_id, pad_token_id=fast.pad_token_id, bos_token_id=None)
    LlamaForCausalLM(cfg).save_pretrained(path)
    return str(path)


@pytest.mark.slow
def test_grpo_trainer_one_step_with_our_rewards(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import GRPOConfig, GRPOTrainer

    from rewards import get_reward

    path = _tiny_model(tmp_path / "tiny")
    data = Dataset.from_list([{"prompt": f"What is {a} + {b} ?", "answer": str(a + b)}
                              for a, b in [(1, 2), (3, 4), (2, 2), (5, 1)]])
    cfg = GRPOConfig(output_dir=str(tmp_path / "out"), use_cpu=True, per_device_train_batch_size=2,
                     num_generations=2, max_steps=1, max_completion_length=8, logging_steps=1, report_to="none",
                     save_strategy="no", learning_rate=1e-4, bf16=False, fp16=False, seed=0)
    trainer = GRPOTrainer(model=AutoModelForCausalLM.from_pretrained(path),
                          processing_class=AutoTokenizer.from_pretrained(path),
                          reward_funcs=[get_reward("accuracy"), get_reward("format")], args=cfg, train_dataset=data)
    trainer.train()
    logs = {k: v for entry in trainer.state.log_history for k, v in entry.items()}
    for name in ("accuracy", "format"):
        value = logs[f"rewards/{name}/mean"]
        assert 0.0 <= value <= 1.0 and not math.isnan(value)
    assert trainer.state.global_step == 1


@pytest.mark.slow
def test_grpo_trainer_one_step_with_the_reward_model_reward(tmp_path, monkeypatch):
    """`reward_model` follows TRL's convention too: TRL passes prompts= and completions= by keyword, and the reward
    renders them with the reward model's own tokenizer and chat template (here the tiny one's)."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    import torch
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaConfig, LlamaForSequenceClassification
    from trl import GRPOConfig, GRPOTrainer

    from rewards import get_reward
    from rl.tiny.sources import resolve_model_path

    path = _tiny_model(tmp_path / "tiny")
    rm_tok = AutoTokenizer.from_pretrained(resolve_model_path("tiny"))
    torch.manual_seed(0)
    rm = LlamaForSequenceClassification(LlamaConfig(
        vocab_size=len(rm_tok), hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
        num_key_value_heads=2, max_position_embeddings=256, num_labels=1, pad_token_id=rm_tok.pad_token_id))
    rm.save_pretrained(tmp_path / "rm")
    rm_tok.save_pretrained(tmp_path / "rm")
    data = Dataset.from_list([{"prompt": f"What is {a} + {b} ?", "answer": str(a + b)}
                              for a, b in [(1, 2), (3, 4), (2, 2), (5, 1)]])
    cfg = GRPOConfig(output_dir=str(tmp_path / "out"), use_cpu=True, per_device_train_batch_size=2,
                     num_generations=2, max_steps=1, max_completion_length=8, logging_steps=1, report_to="none",
                     save_strategy="no", learning_rate=1e-4, bf16=False, fp16=False, seed=0)
    reward = get_reward("reward_model", model=str(tmp_path / "rm"), mode="whole")
    trainer = GRPOTrainer(model=AutoModelForCausalLM.from_pretrained(path),
                          processing_class=AutoTokenizer.from_pretrained(path),
                          reward_funcs=[reward], args=cfg, train_dataset=data)
    trainer.train()
    logs = {k: v for entry in trainer.state.log_history for k, v in entry.items()}
    assert not math.isnan(logs["rewards/reward_model/mean"])
    assert trainer.state.global_step == 1


@pytest.mark.slow
def test_grpo_trainer_one_step_with_the_judge_reward(tmp_path, monkeypatch):
    """`judge` follows TRL's convention: TRL passes prompts=, completions= and the dataset's `answer` column by
    keyword; the judge (here over HTTP, a fake OpenAI-compatible server) reads the question, the answer and the
    reference from them."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import GRPOConfig, GRPOTrainer

    from rewards import get_reward
    from tests.rewards.test_judge_backends import FakeChatServer

    path = _tiny_model(tmp_path / "tiny")
    data = Dataset.from_list([{"prompt": f"What is {a} + {b} ?", "answer": str(a + b)}
                              for a, b in [(1, 2), (3, 4), (2, 2), (5, 1)]])
    cfg = GRPOConfig(output_dir=str(tmp_path / "out"), use_cpu=True, per_device_train_batch_size=2,
                     num_generations=2, max_steps=1, max_completion_length=8, logging_steps=1, report_to="none",
                     save_strategy="no", learning_rate=1e-4, bf16=False, fp16=False, seed=0)
    with FakeChatServer() as srv:
        reward = get_reward("judge", url=srv.url, template="Q:{question} A:{answer} R:{reference}")
        trainer = GRPOTrainer(model=AutoModelForCausalLM.from_pretrained(path),
                              processing_class=AutoTokenizer.from_pretrained(path),
                              reward_funcs=[reward], args=cfg, train_dataset=data)
        trainer.train()
    logs = {k: v for entry in trainer.state.log_history for k, v in entry.items()}
    assert 0.0 <= logs["rewards/judge/mean"] <= 1.0
    asked = [r["messages"][0]["content"] for r in srv.requests]
    assert asked and all(q.startswith("Q:What is ") and " R:" in q for q in asked)
    gold = {str(a + b) for a, b in [(1, 2), (3, 4), (2, 2), (5, 1)]}
    assert all(q.rpartition(" R:")[2] in gold for q in asked)  # the reference is the row's answer column
    assert trainer.state.global_step == 1
