"""LoRA for GRPO (rl/train/lora.py) on the micro model: schema, trainable set, reference = base, merged push,
checkpoint + resume, export."""
import json

import pytest
import torch
from peft.tuners.tuners_utils import BaseTunerLayer
from safetensors.torch import load_file

from rl.config.grpo import GRPOConfig
from rl.config.recipe import ConfigError, load_config
from rl.core.episode import SamplingParams
from rl.train.distributed import make_accelerator
from rl.train.learner import Learner, completion_logprobs
from rl.train.lora import merge_stream
from rl.train.models import load_causal_lm, load_tokenizer
from tests.train.test_learner import make_batch

LORA = {"model.lora.enabled": "true", "model.lora.r": 2, "model.lora.alpha": 4, "train.batch_size": 8,
        "rollout.group_size": 4, "train.micro_batch_size": 4, "model.lora.learning_rate": 5e-2}


def config(**overrides):
    return load_config(GRPOConfig, "recipes/tiny/r1_zero.yaml",
                       ["rollout.max_completion_length=8", *[f"{k}={v}" for k, v in {**LORA, **overrides}.items()]])


def lora_learner(model_dir, **overrides):
    cfg = config(**overrides)
    torch.manual_seed(0)  # the adapters' A init
    return Learner(cfg, make_accelerator(cfg), load_causal_lm(str(model_dir)), None)


# --------------------------------------------------------------------------------------------------------- schema

def test_schema_keys_and_defaults():
    cfg = config()
    lo = cfg.model.lora
    assert (lo.enabled, lo.r, lo.alpha, lo.dropout, lo.target_modules, lo.learning_rate) == (True, 2, 4, 0.0,
                                                                                             ["all-linear"], 5e-2)
    assert load_config(GRPOConfig, "recipes/tiny/r1_zero.yaml").model.lora.enabled is False


@pytest.mark.parametrize("override, message", [
    ("model.lora.r=0", "model.lora.r=0 must be at least 1"),
    ("model.lora.alpha=0", "model.lora.alpha=0 must be > 0"),
    ("model.lora.dropout=1.0", "model.lora.dropout=1.0 must be in [0, 1)"),
    ("model.lora.target_modules=[]", "must be a non-empty list"),
    ("model.lora.target_modules=[all-linear,q_proj]", "'all-linear' stands alone"),
    ("model.lora.target_modules=[q_proj,lm_head]", "lm_head cannot carry an adapter"),
    ("model.lora.rank=4", "unknown recipe key 'model.lora.rank'"),
    ("model.lora.r=two", "model.lora.r: expected int"),
])
def test_schema_errors_are_one_line(override, message):
    with pytest.raises(ConfigError, match=None) as err:
        load_config(GRPOConfig, "recipes/tiny/r1_zero.yaml", ["model.lora.enabled=true", override])
    assert message in str(err.value) and "\n" not in str(err.value)


def test_unknown_target_module_fails_at_start_up(micro_model_dir):
    with pytest.raises(ValueError, match="model.lora.target_modules: "):
        lora_learner(micro_model_dir, **{"model.lora.target_modules": "[nope_proj]"})


# ------------------------------------------------------------------------------------------------- trainable set

def test_only_adapters_train_and_the_optimizer_holds_them_alone(micro_model_dir):
    learner = lora_learner(micro_model_dir)
    trainable = {n: p for n, p in learner.model.named_parameters() if p.requires_grad}
    assert trainable and all(".lora_A." in n or ".lora_B." in n for n in trainable)
    # micro model, all linear layers (the default), r = 2, per layer: 4 attention projections (32 -> 32):
    # A [2, 32] + B [32, 2] = 128 each; gate, up (32 -> 64): 64 + 128 = 192 each; down (64 -> 32): 128 + 64 = 192
    adapter_count = sum(p.numel() for p in trainable.values())
    assert adapter_count == 2 * (4 * 128 + 3 * 192)
    optimizer_params = [p for g in learner.optimizer.param_groups for p in g["params"]]
    assert sum(p.numel() for p in optimizer_params) == adapter_count
    frozen = {n: p.detach().clone() for n, p in learner.model.named_parameters() if not p.requires_grad}
    learner.step(make_batch(load_tokenizer(str(micro_model_dir))))
    assert sum(p.numel() for s in learner.optimizer.state.values() for p in s.values()
               if torch.is_tensor(p) and p.dim() > 0) == 2 * adapter_count  # exp_avg + exp_avg_sq
    for n, p in learner.model.named_parameters():
        if n in frozen:
            assert torch.equal(p, frozen[n]), n  # the base did not move
    assert all(p.abs().max() > 0 for n, p in trainable.items() if ".lora_B." in n)  # B left its zero init


# ----------------------------------------------------------------------------------------------------- reference

def test_reference_is_the_base_model_with_adapters_disabled(micro_model_dir):
    """beta > 0 with LoRA: no reference model is loaded (the learner's reference IS the policy module); its
    logprobs equal a freshly loaded base model's, while the trained policy's differ."""
    tok = load_tokenizer(str(micro_model_dir))
    learner = lora_learner(micro_model_dir, **{"algorithm.beta": 0.1})
    assert learner.ref_model is learner.model
    with pytest.raises(ValueError, match="do not load a second model"):
        cfg = config(**{"algorithm.beta": 0.1})
        Learner(cfg, make_accelerator(cfg), load_causal_lm(str(micro_model_dir)),
                load_causal_lm(str(micro_model_dir)))
    for seed in (1, 2):  # two updates: the adapters are non-zero now
        learner.step(make_batch(tok, seed=seed))
    batch = make_batch(tok, seed=3)
    prepared, _ = learner.prepare(batch)
    base = completion_logprobs(load_causal_lm(str(micro_model_dir)).eval(), prepared,
                               learner.cfg.rollout.temperature)
    torch.testing.assert_close(prepared.ref_logprobs, base, rtol=0, atol=1e-6)  # same function, fp32 rounding
    with torch.no_grad():
        policy = completion_logprobs(learner.model, prepared, learner.cfg.rollout.temperature)
    assert (policy - base).abs().max() > 1e-3  # the adapters matter: this is not comparing base with base
    assert learner.lora.peft_model.base_model.model is learner.unwrapped_model  # adapters back on after the context
    layers = [m for m in learner.unwrapped_model.modules() if isinstance(m, BaseTunerLayer)]
    assert len(layers) == 2 * 7 and not any(m.disable_adapters for m in layers)  # 2 blocks x 7 linear layers


# -------------------------------------------------------------------------------------------------- merged push

def test_merge_stream_worked_example():
    """The module docstring's example: W = I, A = [[1, 2]], B = [[3], [4]], alpha 2 / r 1 = scale 2."""
    w, a, b = torch.eye(2), torch.tensor([[1.0, 2.0]]), torch.tensor([[3.0], [4.0]])
    stream = [("emb.weight", torch.ones(3)), ("l.lora_B.default.weight", b), ("l.base_layer.weight", w),
              ("l.lora_A.default.weight", a), ("norm.weight", torch.zeros(2))]
    out = dict(merge_stream(stream, {"l": 2.0}))
    assert list(out) == ["emb.weight", "l.weight", "norm.weight"]
    assert out["l.weight"].tolist() == [[7.0, 12.0], [8.0, 17.0]]
    assert w.tolist() == [[1.0, 0.0], [0.0, 1.0]] and b.tolist() == [[3.0], [4.0]]  # inputs untouched
    with pytest.raises(RuntimeError, match="incomplete layers"):
        list(merge_stream(stream[:3], {"l": 2.0}))



def test_merge_stream_passes_a_biased_layers_bias_under_the_base_name():
    """Qwen2's q/k/v projections have a bias: peft keeps it in base_layer; LoRA does not change it."""
    w, a, b, bias = torch.eye(2), torch.tensor([[1.0, 2.0]]), torch.tensor([[3.0], [4.0]]), torch.tensor([5.0, 6.0])
    stream = [("l.base_layer.weight", w), ("l.base_layer.bias", bias), ("l.lora_A.default.weight", a),
              ("l.lora_B.default.weight", b)]
    out = dict(merge_stream(stream, {"l": 2.0}))
    assert sorted(out) == ["l.bias", "l.weight"]
    assert out["l.bias"].tolist() == [5.0, 6.0] and out["l.weight"].tolist() == [[7.0, 12.0], [8.0, 17.0]]


def test_qwen2_with_biased_projections_pushes_base_names(tmp_path):
    """LoRA on a Qwen2 model (q/k/v with bias, as the real recipes' Qwen2.5): the merged push carries exactly the
    base model's names, the biases unchanged, and a model loaded with it computes what the peft model computes."""
    from transformers import Qwen2Config, Qwen2ForCausalLM
    torch.manual_seed(0)
    qwen = Qwen2ForCausalLM(Qwen2Config(vocab_size=64, hidden_size=32, intermediate_size=48, num_hidden_layers=1,
                                        num_attention_heads=4, num_key_value_heads=2, tie_word_embeddings=True))
    qwen.save_pretrained(tmp_path)
    cfg = config(**{"model.lora.target_modules": "[all-linear]"})
    learner = Learner(cfg, make_accelerator(cfg), Qwen2ForCausalLM.from_pretrained(tmp_path), None)
    with torch.no_grad():  # B != 0, so the merge is not trivially W
        for n, p in learner.unwrapped_model.named_parameters():
            if "lora_B" in n:
                p.normal_(0, 0.1)
    pushed = dict(learner.full_named_parameters())
    base = dict(Qwen2ForCausalLM.from_pretrained(tmp_path).named_parameters())
    assert sorted(pushed) == sorted(base) and "model.layers.0.self_attn.q_proj.bias" in pushed
    torch.testing.assert_close(pushed["model.layers.0.self_attn.q_proj.bias"],
                               base["model.layers.0.self_attn.q_proj.bias"], rtol=0, atol=0)
    merged = Qwen2ForCausalLM.from_pretrained(tmp_path)
    merged.load_state_dict(pushed, strict=False)
    ids = torch.randint(0, 64, (2, 7))
    with torch.no_grad():
        torch.testing.assert_close(merged(ids).logits, learner.unwrapped_model(ids).logits, rtol=0, atol=1e-5)


def trained(model_dir, steps=2):
    learner = lora_learner(model_dir)
    tok = load_tokenizer(str(model_dir))
    for seed in range(1, steps + 1):
        learner.step(make_batch(tok, seed=seed))
    return learner, tok


def test_pushed_weights_are_base_plus_scaled_BA_and_the_engine_decodes_them(micro_model_dir):
    from rl.rollout.engines.hf import HFEngine

    learner, tok = trained(micro_model_dir)
    base = load_causal_lm(str(micro_model_dir))
    adapters = {n: p.detach().clone() for n, p in learner.unwrapped_model.named_parameters() if "lora_" in n}
    pushed = {n: t.clone() for n, t in learner.full_named_parameters()}
    base_state = dict(base.named_parameters())
    assert sorted(pushed) == sorted(base_state)  # the base model's names, nothing extra
    scale = 4 / 2  # alpha / r
    for name, w in base_state.items():
        layer = name.removesuffix(".weight")
        if f"{layer}.lora_A.default.weight" in adapters:  # W + scale * B @ A, by hand
            a, b = adapters[f"{layer}.lora_A.default.weight"], adapters[f"{layer}.lora_B.default.weight"]
            want = w.detach() + scale * b @ a
            assert (b @ a).abs().max() > 1e-3, name  # a real update
        else:
            want = w.detach()
        torch.testing.assert_close(pushed[name], want, rtol=0, atol=1e-6, msg=name)
    for n, p in learner.unwrapped_model.named_parameters():  # pushing changed nothing of the learner
        if n in adapters:
            assert torch.equal(p, adapters[n]), n
    # a separate transformers engine loaded with the pushed weights decodes as the peft model does
    base.load_state_dict(pushed, strict=False)  # lm_head is tied to embed_tokens (pushed once)
    prompts = [make_batch(tok, n=8, seed=9).input_ids[i, -6:].tolist() for i in range(4)]
    greedy = SamplingParams(n=1, temperature=1.0, max_tokens=8, seed=0, greedy=True)
    merged_out = HFEngine(base.eval(), tok).generate(prompts, greedy)
    peft_out = HFEngine(learner.unwrapped_model, tok).generate(prompts, greedy)
    assert [g[0].completion_ids for g in merged_out] == [g[0].completion_ids for g in peft_out]
    for m, p in zip(merged_out, peft_out):  # the same function: logprobs equal to float32 rounding
        assert m[0].logprobs == pytest.approx(p[0].logprobs, abs=1e-4)


# ------------------------------------------------------------------------------------ checkpoint, resume, export

def test_checkpoint_holds_the_adapter_and_resume_equals_straight(micro_model_dir, tmp_path):
    from rl.train.checkpoint import load_training_state, save_checkpoint
    from rl.train.learner import POLICY_PREFIX

    tok = load_tokenizer(str(micro_model_dir))
    straight = lora_learner(micro_model_dir, **{"train.lr_scheduler": "linear", "train.max_steps": 4})
    for step in (1, 2, 3):
        straight.step(make_batch(tok, seed=step))
        if step == 2:
            ckpt = save_checkpoint(straight.accelerator, tmp_path, 2, straight.model, tok, straight.scheduler,
                                   {"sampler_position": 0}, weights_prefix=POLICY_PREFIX,
                                   write_weights=straight.checkpoint_writer)
    files = {p.name for p in ckpt.iterdir()}
    assert {"adapter_config.json", "adapter_model.safetensors"} <= files and "model.safetensors" not in files
    adapter = load_file(ckpt / "adapter_model.safetensors")
    assert len(adapter) == 2 * 14 and all("lora_" in k for k in adapter)  # A and B of 2 x 7 layers
    assert json.loads((ckpt / "adapter_config.json").read_text())["base_model_name_or_path"] == str(micro_model_dir)
    state = load_file(ckpt / "state/model.safetensors")  # accelerate's state: the adapters only
    assert {k.removeprefix("lm.") for k in state} == straight.lora.trainable

    resumed = lora_learner(micro_model_dir, **{"train.lr_scheduler": "linear", "train.max_steps": 4})
    assert load_training_state(resumed.accelerator, ckpt, resumed.scheduler)["step"] == 2
    resumed.step(make_batch(tok, seed=3))
    want = dict(straight.full_named_parameters())
    for name, t in resumed.full_named_parameters():
        torch.testing.assert_close(t, want[name], rtol=0, atol=1e-7, msg=name)  # the same arithmetic, replayed
    assert resumed.scheduler.get_last_lr() == straight.scheduler.get_last_lr()


def test_export_merges_a_lora_grpo_checkpoint(micro_model_dir, tmp_path):
    from rl.export import export
    from rl.train.checkpoint import save_checkpoint
    from rl.train.learner import POLICY_PREFIX

    learner, tok = trained(micro_model_dir)
    ckpt = save_checkpoint(learner.accelerator, tmp_path / "run", 2, learner.model, tok, learner.scheduler,
                           {"sampler_position": 0}, weights_prefix=POLICY_PREFIX,
                           write_weights=learner.checkpoint_writer)
    result = export(ckpt, tmp_path / "export")
    assert result["lora_merged"] and result["max_abs_diff"] <= 1e-5
    exported = load_file(tmp_path / "export/model.safetensors")
    pushed = dict(learner.full_named_parameters())
    for name, t in exported.items():  # peft's merge_and_unload == our merge (same math, float32 rounding)
        torch.testing.assert_close(t, pushed[name], rtol=0, atol=1e-6, msg=name)


# --------------------------------------------------------------------------------------------- defaults that learn

def test_defaults_adapt_every_linear_layer_at_10x_the_learning_rate(micro_model_dir):
    """`model.lora.enabled=true` alone: adapters on every linear layer of every block (MLPs included) and AdamW at
    10x train.learning_rate. Before: [q,k,v,o]_proj only, at the full fine-tuning rate (0.370 -> 0.375 in 40 steps
    on the tiny recipe). The micro model's blocks have 7 linear layers (q, k, v, o, gate, up, down) x 2 blocks."""
    cfg = load_config(GRPOConfig, "recipes/tiny/r1_zero.yaml", ["model.lora.enabled=true", "train.learning_rate=3e-4"])
    assert cfg.model.lora.target_modules == ["all-linear"]
    torch.manual_seed(0)
    learner = Learner(cfg, make_accelerator(cfg), load_causal_lm(str(micro_model_dir)), None)
    assert len(learner.lora.scales) == 7 * 2
    assert any(name.endswith("mlp.down_proj") for name in learner.lora.scales)
    assert [g["initial_lr"] for g in learner.optimizer.param_groups] == [pytest.approx(3e-3)]  # 10 x 3e-4
    assert learner.scheduler.get_last_lr()[0] == pytest.approx(3e-3 * learner.scheduler.lr_lambdas[0](0))


@pytest.mark.parametrize("overrides, lr, source", [
    # (recipe keys, the adapters' rate, where the start-up line says it comes from)
    ({"train.learning_rate": 2e-4, "model.lora.learning_rate": "null"}, 2e-3, "10x train.learning_rate 0.0002; set model.lora.learning_rate to choose"),
    ({"train.learning_rate": 2e-4, "model.lora.learning_rate": 5e-4}, 5e-4, "model.lora.learning_rate"),
])
def test_learning_rate_key_and_start_up_notice(micro_model_dir, overrides, lr, source):
    from rl.train.lora import start_up_notice
    cfg = config(**overrides)
    assert cfg.model.lora.effective_learning_rate(cfg.train.learning_rate) == pytest.approx(lr)
    torch.manual_seed(0)
    learner = Learner(cfg, make_accelerator(cfg), load_causal_lm(str(micro_model_dir)), None)
    assert learner.optimizer.param_groups[0]["initial_lr"] == pytest.approx(lr)  # before the schedule's factor
    line = start_up_notice(cfg.model.lora, cfg.train.learning_rate, 1200, 100_000)
    assert line == f"LoRA r 2, alpha 4 on [{', '.join(cfg.model.lora.target_modules)}]: 1,200 of 100,000 " \
                   f"parameters train, at lr {lr:g} ({source})"


def test_learning_rate_must_be_positive():
    with pytest.raises(ConfigError, match=r"model.lora.learning_rate=0.0 must be > 0 \(or null: 10x"):
        load_config(GRPOConfig, "recipes/tiny/r1_zero.yaml", ["model.lora.enabled=true",
                                                               "model.lora.learning_rate=0.0"])


def test_bf16_run_keeps_the_frozen_base_in_bf16_and_the_adapters_in_float32(micro_model_dir, tmp_path):
    """model.dtype=bfloat16: the frozen base is loaded in bf16 (half the memory of the float32 load it had before),
    the adapters train in float32 (AdamW at small rates), and the checkpoint's adapter is float32. Single process:
    the rate and the step behave as in float32 (the base's matmuls ran in bf16 under autocast before too)."""
    from accelerate.state import AcceleratorState

    from rl.train.checkpoint import save_checkpoint
    from rl.train.learner import POLICY_PREFIX
    from rl.train.models import load_policy_and_reference
    AcceleratorState._reset_state(True)
    cfg = config(**{"model.dtype": "bfloat16", "algorithm.beta": 0.1})
    torch.manual_seed(0)
    policy, ref = load_policy_and_reference(str(micro_model_dir), cfg.model, cfg.algorithm.beta)
    assert ref is None  # the reference is the base with the adapters off
    learner = Learner(cfg, make_accelerator(cfg), policy, None)
    dtypes = {(p.requires_grad, p.dtype) for p in learner.model.parameters()}
    assert dtypes == {(False, torch.bfloat16), (True, torch.float32)}
    tok = load_tokenizer(str(micro_model_dir))
    metrics = learner.step(make_batch(tok))
    assert abs(metrics["kl"]) < 1e-6  # step 0: B = 0, the policy is the base (adapters off) exactly
    learner.step(make_batch(tok, seed=1))
    ckpt = save_checkpoint(learner.accelerator, tmp_path, 2, learner.model, tok, learner.scheduler, {},
                           weights_prefix=POLICY_PREFIX, write_weights=learner.checkpoint_writer,
                           gather_weights=learner.checkpoint_gather)
    adapter = load_file(ckpt / "adapter_model.safetensors")
    trained = {n: p for n, p in learner.unwrapped_model.named_parameters() if p.requires_grad}
    assert len(adapter) == len(trained) == 2 * 14
    for name, tensor in adapter.items():  # exactly the float32 parameters the optimizer updates
        assert tensor.dtype == torch.float32
        param = name.removeprefix("base_model.model.").replace(".weight", ".default.weight")  # peft's file names
        torch.testing.assert_close(tensor, trained[param].detach(), rtol=0, atol=0)
    AcceleratorState._reset_state(True)
