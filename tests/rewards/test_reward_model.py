"""`reward_model` (rewards/models/reward_model.py): a sequence-classification reward model as a TRL-convention reward.
A small random-init Llama classifier with the tiny tokenizer and its chat template stands in for a real one; every
expected value is that model's own forward pass on the text the reward is meant to render."""
from __future__ import annotations

import math

import pytest
import torch

from rewards import RewardError, RewardScorer, get_reward
from rewards.models.scores import correlation_counts, length_correlation, scored_part, summarize_counts, zscore


@pytest.fixture(scope="module")
def rm_dir(tmp_path_factory):
    from transformers import AutoTokenizer, LlamaConfig, LlamaForSequenceClassification
    from rl.tiny.sources import resolve_model_path
    tok = AutoTokenizer.from_pretrained(resolve_model_path("tiny"))
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                         num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=256, num_labels=1,
                         pad_token_id=tok.pad_token_id)
    model = LlamaForSequenceClassification(config)
    torch.nn.init.normal_(model.score.weight, std=1.0)  # visible score differences
    out = tmp_path_factory.mktemp("rm")
    model.save_pretrained(out)
    tok.save_pretrained(out)
    return str(out)


def direct_score(rm_dir: str, prompt: str, response: str) -> float:
    """The model's logit on `user: prompt\\nassistant: response\\n` (the tiny chat template), one sequence, no pad."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer
    tok = AutoTokenizer.from_pretrained(rm_dir)
    model = AutoModelForSequenceClassification.from_pretrained(rm_dir).eval()
    text = f"user: {prompt}\nassistant: {response}\n"
    ids = tok(text, add_special_tokens=False, return_tensors="pt")["input_ids"]
    with torch.no_grad():
        return model(input_ids=ids).logits[0, 0].item()


PROMPTS = ["Greet Ann.", "Thank Bo for the tea.", "Greet Ann.", "Say goodbye to Cy."]
COMPLETIONS = ["<think> be kind </think> Hello Ann!", "Thanks a lot, Bo, the tea was lovely and warm today.",
               "<think> x </think> Go away.", "Bye."]


def test_scores_are_the_models_logit_on_the_rendered_conversation(rm_dir):
    rm = get_reward("reward_model", model=rm_dir, mode="whole", batch_size=4)
    got = rm(COMPLETIONS, prompts=PROMPTS)  # TRL's convention: keyword prompts and completions
    want = [direct_score(rm_dir, p, c) for p, c in zip(PROMPTS, COMPLETIONS)]
    assert got == pytest.approx(want, abs=1e-5)
    assert len(set(round(v, 4) for v in got)) == 4  # the test model tells them apart


def test_batching_and_padding_change_no_score(rm_dir):
    one = get_reward("reward_model", model=rm_dir, batch_size=1)(COMPLETIONS, prompts=PROMPTS)
    three = get_reward("reward_model", model=rm_dir, batch_size=3)(COMPLETIONS, prompts=PROMPTS)
    assert three == pytest.approx(one, abs=1e-5)


def test_after_think_judges_only_the_final_part_and_whole_judges_everything(rm_dir):
    after = get_reward("reward_model", model=rm_dir, mode="after_think")
    whole = get_reward("reward_model", model=rm_dir, mode="whole")
    text = "<think> 1+1 and a long detour </think> Hello Ann!"
    assert after([text], prompts=["Greet Ann."]) == pytest.approx(whole([" Hello Ann!"], prompts=["Greet Ann."]))
    assert whole([text], prompts=["Greet Ann."])[0] == pytest.approx(direct_score(rm_dir, "Greet Ann.", text),
                                                                      abs=1e-5)
    # no reasoning section: the whole reply is the answer in both modes
    assert after(["Hello Ann!"], prompts=["Greet Ann."]) == pytest.approx(whole(["Hello Ann!"], prompts=["Greet Ann."]))


def test_chat_message_prompts_and_completions(rm_dir):
    rm = get_reward("reward_model", model=rm_dir, mode="whole")
    conv = rm([[{"role": "assistant", "content": "Hello Ann!"}]], prompts=[[{"role": "user", "content": "Greet Ann."}]])
    assert conv == pytest.approx(rm(["Hello Ann!"], prompts=["Greet Ann."]))


def test_normalize_gives_the_batch_zscore_of_the_raw_scores(rm_dir):
    raw = get_reward("reward_model", model=rm_dir)(COMPLETIONS, prompts=PROMPTS)
    norm = get_reward("reward_model", model=rm_dir, normalize=True)(COMPLETIONS, prompts=PROMPTS)
    assert norm == pytest.approx(zscore(raw), abs=1e-6)
    assert sum(norm) == pytest.approx(0.0, abs=1e-5) and sum(v * v for v in norm) / 4 == pytest.approx(1.0, abs=1e-4)


@pytest.mark.parametrize("values, expected", [
    ([1.0, 2.0, 3.0], [-math.sqrt(1.5), 0.0, math.sqrt(1.5)]),  # std sqrt(2/3): 1/sqrt(2/3) = sqrt(1.5)
    ([4.0, 4.0, 4.0], [0.0, 0.0, 0.0]),
    ([2.0], [0.0]),
    ([], []),
])
def test_zscore_table(values, expected):
    assert zscore(values) == pytest.approx(expected, abs=1e-5)


@pytest.mark.parametrize("text, mode, expected", [
    ("<think> a </think> b", "after_think", " b"),
    ("<think> a </think> b </think> c", "after_think", " c"),   # the last delimiter
    ("<think> a </think> b", "whole", "<think> a </think> b"),
    ("<think> never closes", "after_think", "<think> never closes"),
    ("", "after_think", ""),
])
def test_scored_part_table(text, mode, expected):
    assert scored_part(text, mode) == expected


def test_length_correlation_sums_add_up_over_calls_and_match_pearson():
    scores, lengths = [0.5, -1.0, 2.0, 0.0, 1.5], [12, 30, 5, 20, 8]
    split = {k: a + b for (k, a), b in zip(correlation_counts(scores[:2], lengths[:2]).items(),
                                           correlation_counts(scores[2:], lengths[2:]).values())}
    r = length_correlation(split)
    mx, my = sum(lengths) / 5, sum(scores) / 5
    sxy = sum((x - mx) * (y - my) for x, y in zip(lengths, scores))
    sxx, syy = sum((x - mx) ** 2 for x in lengths), sum((y - my) ** 2 for y in scores)
    assert r == pytest.approx(sxy / math.sqrt(sxx * syy)) and r < -0.9  # shorter scored higher here
    assert math.isnan(length_correlation(correlation_counts([1.0, 2.0], [7, 7])))  # no length variance


def test_in_the_scorer_it_scores_its_task_only_and_logs_the_length_watch(rm_dir):
    spec = {"accuracy": 1.0, "reward_model": {"weight": 0.5, "model": rm_dir, "mode": "after_think"}}
    sets = {"arithmetic": ["accuracy"], "general": ["reward_model"]}
    completions = ["<answer> 20 </answer>", COMPLETIONS[0], COMPLETIONS[1], "<answer> 3 </answer>"]
    cols = {"answer": ["20", None, None, "20"], "task": ["arithmetic", "general", "general", "arithmetic"],
            "prompts": ["What is 4 * 5?", PROMPTS[0], PROMPTS[1], "What is 4 * 5?"], "completion_length": [4, 9, 14, 4]}
    with RewardScorer(spec, num_workers=0, reward_sets=sets) as scorer:
        scorer.warmup()
        res = scorer.score(completions, cols)
    raw = get_reward("reward_model", model=rm_dir)(completions[1:3], prompts=PROMPTS[:2])
    assert res.per_reward["reward_model"] == [None, pytest.approx(raw[0], abs=1e-5), pytest.approx(raw[1], abs=1e-5),
                                              None]
    assert res.per_reward["accuracy"] == [1.0, None, None, 0.0]
    assert res.totals[1] == pytest.approx(0.5 * raw[0], abs=1e-5)
    # two general rows: r = +1 when the longer one scored higher, -1 otherwise
    assert res.metrics["rewards/reward_model/length_corr"] == pytest.approx(1.0 if raw[1] > raw[0] else -1.0)
    assert res.metrics["rewards/reward_model/raw_mean"] == pytest.approx(sum(raw) / 2, abs=1e-5)
    assert res.metrics["rewards/general/reward_model"] == pytest.approx(sum(raw) / 2, abs=1e-5)


def test_summarize_counts_example():
    counts = {**correlation_counts([1.0, 3.0], [10, 30]), "raw_sum": 4.0, "forward_s": 0.5, "batches": 2.0}
    assert summarize_counts(counts) == {"length_corr": 1.0, "raw_mean": 2.0, "batch_s": 0.25}


@pytest.mark.parametrize("scores, lengths, expected", [
    ([1.0, 3.0], [10, 10], {"raw_mean": 2.0, "batch_s": 0.25}),  # equal lengths: r undefined -> left out, not NaN
    ([2.0, 2.0], [10, 30], {"raw_mean": 2.0, "batch_s": 0.25}),  # equal scores: the same
    ([], [], {"batch_s": 0.25}),  # nothing scored on this rank: no mean either
])
def test_summarize_counts_leaves_out_what_is_undefined(scores, lengths, expected):
    counts = {**correlation_counts(scores, lengths), "raw_sum": sum(scores), "forward_s": 0.5, "batches": 2.0}
    assert summarize_counts(counts) == expected


@pytest.mark.parametrize("params, error", [
    ({}, "parameter 'model' (a path or hub name of a sequence-classification reward model) or 'url'"),
    ({"model": "x", "url": "http://h:1/"}, "is required, not both"),
    ({"url": "h:1"}, "url='h:1' must start with http:// or https://"),
    ({"url": "http://h:1/", "timeout_s": 0}, "timeout_s must be a positive number"),
    ({"url": "http://h:1/", "retries": -1}, "retries must be an integer >= 0"),
    ({"model": "x", "mode": "answer"}, "mode='answer' is not one of: after_think, whole"),
    ({"model": "x", "batch_size": 0}, "batch_size must be a positive integer"),
    ({"model": "x", "dtype": "fp8"}, "dtype='fp8' is not one of: auto, float32, bfloat16, float16"),
    ({"model": "x", "device": "tpu"}, "device='tpu': expected auto, cpu or cuda[:N]"),
    ({"model": "x", "normalize": "yes"}, "normalize must be true or false"),
    ({"model": "./no/such/dir"}, "model './no/such/dir' is not a directory"),
    ({"model": "x", "temperature": 1.0}, "unknown parameter 'temperature'"),
])
def test_bad_parameters_are_one_line_errors_without_loading_anything(params, error):
    with pytest.raises(ValueError) as e:
        get_reward("reward_model", **params)
    assert error in str(e.value) and "\n" not in str(e.value)


def test_a_model_that_is_not_a_one_output_reward_model_fails_at_warmup(tmp_path, rm_dir):
    from transformers import AutoConfig
    config = AutoConfig.from_pretrained(rm_dir)
    config.num_labels = 2
    bad = tmp_path / "two"
    bad.mkdir()
    config.save_pretrained(bad)
    with RewardScorer({"reward_model": {"model": str(bad)}}, num_workers=0) as scorer:
        with pytest.raises(RewardError, match="^reward 'reward_model': reward_model '.*two': a reward model has one "
                                              "output \\(num_labels=1\\), this one has 2$"):
            scorer.warmup()  # RewardError: the GRPO stage prints it as one line and exits 1
    (tmp_path / "empty").mkdir()
    with RewardScorer({"reward_model": {"model": str(tmp_path / "empty")}}, num_workers=0) as scorer:
        with pytest.raises(RewardError, match="cannot load its config"):
            scorer.warmup()


def test_under_zero3_the_reward_model_loads_whole_and_the_deepspeed_config_is_restored(rm_dir):
    """accelerate registers a ZeRO-3 config with transformers; a reward model loaded under it would be partitioned
    (empty shards on each rank, the launch failed with "Padding_idx must be within num_embeddings")."""
    from transformers.integrations import HfDeepSpeedConfig, is_deepspeed_zero3_enabled
    from transformers.integrations import deepspeed as hf_ds
    want = direct_score(rm_dir, "Greet Ann.", "Hello Ann!")  # before: any load under the config is partitioned
    config = HfDeepSpeedConfig({"zero_optimization": {"stage": 3}, "train_micro_batch_size_per_gpu": 1})
    try:
        assert is_deepspeed_zero3_enabled()
        rm = get_reward("reward_model", model=rm_dir, mode="whole")
        got = rm(["Hello Ann!"], prompts=["Greet Ann."])
        assert is_deepspeed_zero3_enabled()  # restored
        embed = rm._fn.model.get_input_embeddings().weight
        assert embed.shape[0] == rm._fn.model.config.vocab_size and embed.numel() > 0
        assert got == pytest.approx([want], abs=1e-5)
    finally:
        hf_ds.unset_hf_deepspeed_config()
    del config


def test_offload_gives_the_same_scores_and_leaves_the_weights_on_the_cpu(rm_dir):
    resident = get_reward("reward_model", model=rm_dir, batch_size=3)
    off = get_reward("reward_model", model=rm_dir, batch_size=3, offload=True)
    assert off(COMPLETIONS, prompts=PROMPTS) == resident(COMPLETIONS, prompts=PROMPTS)  # bit for bit
    assert {p.device.type for p in off._fn.model.parameters()} == {"cpu"}
    metrics = off._fn.summarize(off._fn.drain_metrics())
    assert metrics["offload_s"] >= 0.0 and "offload_s" not in resident._fn.summarize(resident._fn.drain_metrics())


def test_offload_moves_to_the_device_for_the_call_and_back_even_on_error(rm_dir, monkeypatch):
    off = get_reward("reward_model", model=rm_dir, offload=True)._fn
    off.warmup()
    off.device = torch.device("cuda", 7)  # a GPU stands here (none on this machine): the order of events matters
    events = []
    real_to = type(off.model).to

    def record(model, device, *a, **k):
        events.append(str(device))
        return model if str(device).startswith("cuda") else real_to(model, device, *a, **k)

    monkeypatch.setattr(type(off.model), "to", record)
    monkeypatch.setattr(off, "_forward", lambda texts: events.append("forward") or [0.5] * len(texts))
    assert off(COMPLETIONS[:2], prompts=PROMPTS[:2]) == [0.5, 0.5]
    assert events == ["cuda:7", "forward", "cpu"]  # to the device for the forward passes, to the CPU after
    events.clear()
    monkeypatch.setattr(off, "_forward", lambda texts: 1 / 0)
    with pytest.raises(ZeroDivisionError):
        off(COMPLETIONS[:1], prompts=PROMPTS[:1])
    assert events == ["cuda:7", "cpu"]  # back to the CPU although scoring failed


def test_offload_must_be_a_boolean(rm_dir):
    with pytest.raises(ValueError, match="reward 'reward_model': offload must be true or false, got 'yes'"):
        get_reward("reward_model", model=rm_dir, offload="yes")
