"""rl/train/distributed.py without processes: strategy names, refusals, the DeepSpeed config fill, parameter names."""
from types import SimpleNamespace

import pytest
import torch
from accelerate.utils import DistributedType

from rl.config.recipe import ConfigError
from rl.train.distributed import check_supported, clean_name, configure_deepspeed, iter_full_params, strategy


def fake_accelerator(kind, processes=2, **state):
    return SimpleNamespace(distributed_type=kind, num_processes=processes, state=SimpleNamespace(**state))


@pytest.mark.parametrize("accelerator, name", [
    (fake_accelerator(DistributedType.NO, 1), "single"),
    (fake_accelerator(DistributedType.MULTI_CPU), "ddp"),
    (fake_accelerator(DistributedType.MULTI_GPU), "ddp"),
    (fake_accelerator(DistributedType.DEEPSPEED, deepspeed_plugin=SimpleNamespace(zero_stage=3)), "zero3"),
    (fake_accelerator(DistributedType.FSDP, fsdp_plugin=SimpleNamespace(fsdp_version=2)), "fsdp2"),
])
def test_strategy_names_and_supported(accelerator, name):
    assert strategy(accelerator) == name
    check_supported(accelerator)  # no error


def test_fsdp1_is_refused_in_one_line():
    acc = fake_accelerator(DistributedType.FSDP, fsdp_plugin=SimpleNamespace(fsdp_version=1))
    with pytest.raises(ConfigError, match=r"selects fsdp1, which this project does not support: use FSDP2") as e:
        check_supported(acc)
    assert "\n" not in str(e.value)


def test_deepspeed_auto_values_are_filled_from_the_recipe():
    ds = {"train_micro_batch_size_per_gpu": "auto", "gradient_accumulation_steps": "auto", "gradient_clipping": "auto"}
    acc = fake_accelerator(DistributedType.DEEPSPEED, 8, deepspeed_plugin=SimpleNamespace(deepspeed_config=ds))
    configure_deepspeed(acc, micro_batch_size=8, accumulation_steps=16, max_grad_norm=1.0)
    assert ds == {"train_micro_batch_size_per_gpu": 8, "gradient_accumulation_steps": 16, "gradient_clipping": 1.0,
                  "train_batch_size": 8 * 16 * 8}
    configure_deepspeed(fake_accelerator(DistributedType.MULTI_CPU), 8, 16, 1.0)  # no plugin: nothing to do


@pytest.mark.parametrize("raw, prefix, name", [
    ("module.lm.model.layers.0.self_attn.q_proj.weight", "lm.", "model.layers.0.self_attn.q_proj.weight"),  # DDP
    ("lm.model.norm.weight", "lm.", "model.norm.weight"),
    ("lm._orig_mod.model.embed_tokens.weight", "lm.", "model.embed_tokens.weight"),  # torch.compile
    ("lm.model.layers.3._checkpoint_wrapped_module.mlp.up_proj.weight", "lm.", "model.layers.3.mlp.up_proj.weight"),
])
def test_clean_name(raw, prefix, name):
    assert clean_name(raw, prefix) == name


def test_iter_full_params_plain_model_yields_every_parameter_once():
    from transformers import LlamaConfig, LlamaForCausalLM
    lm = LlamaForCausalLM(LlamaConfig(vocab_size=64, hidden_size=16, intermediate_size=32, num_hidden_layers=2,
                                      num_attention_heads=2, tie_word_embeddings=True))
    from rl.train.policy import CausalLMLogprobs
    names = [n for n, _ in iter_full_params(CausalLMLogprobs(lm), prefix="lm.")]
    assert names == [n for n, _ in lm.named_parameters()]  # checkpoint names; tied lm_head yielded once
    assert "lm_head.weight" not in names and "model.embed_tokens.weight" in names
    for (_, got), (_, want) in zip(iter_full_params(CausalLMLogprobs(lm), "lm."), lm.named_parameters()):
        assert got.data_ptr() == want.data_ptr()  # the parameters themselves, no copies


@pytest.mark.parametrize("timeout_s, gloo, kwargs", [
    # what accelerate passes to init_process_group / deepspeed.init_distributed (InitProcessGroupKwargs.to_kwargs:
    # only the values that differ from its defaults, backend nccl and timeout 600 s)
    (1800, True, {"backend": "gloo", "timeout": 1800}),  # CPU processes: gloo, the recipe's timeout
    (77, False, {"timeout": 77}),                          # GPU: accelerate's NCCL, the recipe's timeout
    (3600.5, False, {"timeout": 3600.5}),
])
def test_process_group_kwargs_carry_the_recipe_timeout(timeout_s, gloo, kwargs):
    from rl.train.distributed import process_group_kwargs
    got = process_group_kwargs(timeout_s, gloo).to_kwargs()
    assert {k: v.total_seconds() if k == "timeout" else v for k, v in got.items()} == kwargs


@pytest.mark.parametrize("bad", [0.0, -5.0])
def test_process_group_timeout_must_be_positive(bad):
    from rl.train.distributed import process_group_kwargs
    with pytest.raises(ValueError, match=f"train.dist_timeout_s must be > 0 seconds, got {bad}"):
        process_group_kwargs(bad, True)
    from rl.config.grpo import GRPOConfig
    from rl.config.recipe import load_config
    with pytest.raises(ConfigError, match=rf"^train.dist_timeout_s={bad} must be > 0 \(seconds\)$"):
        load_config(GRPOConfig, "recipes/tiny/r1_zero.yaml", [f"train.dist_timeout_s={bad}"])


def test_make_accelerator_hands_the_recipe_timeout_to_accelerate():
    """One process creates no process group, but the handler the Accelerator keeps is what a launch would use
    (tests/e2e/test_sharded_eval.py reads the timeout back from a real 2-process group)."""
    from rl.config.grpo import GRPOConfig
    from rl.config.recipe import load_config
    from rl.train.distributed import make_accelerator
    cfg = load_config(GRPOConfig, "recipes/tiny/r1_zero.yaml", ["train.dist_timeout_s=123"])
    assert make_accelerator(cfg).init_handler.timeout.total_seconds() == 123
    assert load_config(GRPOConfig, "recipes/tiny/r1_zero.yaml").train.dist_timeout_s == 1800  # the default
