"""LoRA (rl/train/lora.py) under DDP, DeepSpeed ZeRO-2, ZeRO-3 and FSDP2 on 2 CPU processes == 1 process, launched
as users launch it (the pattern of tests/e2e/test_strategies.py, same script tests/e2e/learner_steps.py): 3 learner
steps, rank-4 adapters on the attention projections, a KL term to the base (beta 0.5: the adapters disabled, no
second model) and gradient checkpointing. Compared with one plain process:

  - loss and gradient norm of every step;
  - the LoRA A/B tensors after the last step, and the merged weights the rollout engine receives (base names);
  - the pushed weights themselves: base W + scale * B @ A (scale = alpha / r = 2) from the A/B each strategy trained,
    every other weight the base's (frozen);
  - the adapter file of the checkpoint written after step 1;
  - save after step 1, resume in a fresh launch, run steps 2-3: the same numbers and adapters as the straight run.

Measured on 2 shared CPU cores: ~45-60 s per strategy (straight + resumed launch), all pass at the tolerances below.
Under ZeRO-3 the merged push gathers each LoRA layer's module (base_layer, lora_A, lora_B are separate modules, so the
three tensors arrive one module after another and merge_stream holds at most one layer); under FSDP2 they are
DTensor.full_tensor() per parameter.
"""
import pytest
import torch
from safetensors.torch import load_file

from tests.e2e.test_strategies import assert_same_weights, launch

pytestmark = pytest.mark.slow
LORA = ["model.lora.enabled=true", "model.lora.r=4", "model.lora.alpha=8", "model.lora.learning_rate=1e-2",
        "model.lora.target_modules=[q_proj,k_proj,v_proj,o_proj]",
        "algorithm.beta=0.5", "model.gradient_checkpointing=true"]
STRATEGIES = ["ddp", "zero2", "zero3", "fsdp2"]

_runs: dict = {}


def runs(strategy, model_dir, tmp):
    if strategy not in _runs:
        out = tmp / strategy
        out.mkdir()
        launch(strategy, model_dir, out / "straight.pt", "--save-after", 1, "--ckpt", out / "ckpt", *LORA)
        resumed = None
        if strategy != "single":
            launch(strategy, model_dir, out / "resumed.pt", "--resume", out / "ckpt/checkpoint-1", *LORA)
            resumed = torch.load(out / "resumed.pt")
        _runs[strategy] = (torch.load(out / "straight.pt"), resumed,
                           load_file(out / "ckpt/checkpoint-1/adapter_model.safetensors"))
    return _runs[strategy]


@pytest.fixture(scope="module")
def tmp(tmp_path_factory):
    return tmp_path_factory.mktemp("lora_strategies")


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_lora_two_processes_equal_one(strategy, micro_model_dir, tmp):
    one, _, one_ckpt = runs("single", micro_model_dir, tmp)
    two, _, two_ckpt = runs(strategy, micro_model_dir, tmp)
    assert (one["world"], two["world"], two["strategy"]) == (1, 2, strategy)
    for a, b in zip(one["steps"], two["steps"], strict=True):
        assert b["loss"] == pytest.approx(a["loss"], rel=1e-5, abs=1e-6)
        assert b["grad_norm"] == pytest.approx(a["grad_norm"], rel=1e-5)
    assert one["steps"][0]["grad_norm"] > 0.01  # a real gradient (B = 0 at step 1: only B's gradient is non-zero)
    assert len(one["adapters"]) == 2 * 4 * 2  # A and B of 4 projections in 2 layers
    moved = max(one["adapters"][k].abs().max() for k in one["adapters"] if ".lora_B." in k)
    assert moved > 1e-3  # B left zero: the comparison is of trained adapters
    assert_same_weights(two["adapters"], one["adapters"], atol=1e-5)
    assert_same_weights(two["weights"], one["weights"], atol=1e-5)  # merged, base names: what an engine receives
    assert not any("lora_" in k or "base_layer" in k for k in one["weights"])
    assert_same_weights(two_ckpt, one_ckpt, atol=1e-5)
    assert_merged_is_base_plus_scaled_BA(two, load_file(micro_model_dir / "model.safetensors"), scale=8 / 4)


def assert_merged_is_base_plus_scaled_BA(result, base, scale):
    """What the engine receives (`weights`, base names) == base W + scale * B @ A for every LoRA layer, == base else."""
    layers = {k.split(".lora_A.")[0] for k in result["adapters"] if ".lora_A." in k}
    assert layers
    for name, pushed in result["weights"].items():
        layer = name.removesuffix(".weight")
        want = base[name].float()
        if layer in layers:
            a, b = (result["adapters"][f"{layer}.lora_{x}.default.weight"] for x in "AB")  # [r, in], [out, r]
            want = want + scale * b @ a
        torch.testing.assert_close(pushed, want, rtol=0, atol=1e-6, msg=name)


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_lora_save_then_resume_continues_exactly(strategy, micro_model_dir, tmp):
    straight, resumed, _ = runs(strategy, micro_model_dir, tmp)
    assert [s["step"] for s in resumed["steps"]] == [2, 3]
    for a, b in zip(straight["steps"][1:], resumed["steps"]):
        assert b == pytest.approx(a, rel=1e-6, abs=1e-7)
    assert_same_weights(resumed["adapters"], straight["adapters"], atol=1e-7)
    assert_same_weights(resumed["weights"], straight["weights"], atol=1e-7)


@pytest.mark.parametrize("strategy", ["zero3", "fsdp2"])
def test_lora_grpo_entry_point_under_sharded_strategies(strategy, tmp):
    """rl/grpo.py with LoRA under ZeRO-3 / FSDP2 on 2 processes, the transformers engine decoding with the sharded
    peft model (lock-step), evaluation on all ranks, a KL term to the adapters-disabled base, adapter checkpoints."""
    from rl.tiny.sources import resolve_model_path
    from rl.train.tracking import read_metrics
    from tests.e2e.test_strategies import grpo_overrides, launch_grpo
    out = tmp / f"grpo_lora_{strategy}"
    launch_grpo(strategy, *grpo_overrides(resolve_model_path("tiny"), out), "model.lora.enabled=true",
                "model.lora.r=4", "model.lora.alpha=8", "algorithm.beta=0.1", "model.lora.learning_rate=2e-3")
    train = [m for m in read_metrics(out) if "loss" in m]
    assert [m["step"] for m in train] == [1, 2, 3]
    assert all(m["kl"] >= 0 for m in train) and train[-1]["kl"] > 0  # the adapters moved the policy off the base
    ckpt = out / "checkpoint-2"
    assert (ckpt / "adapter_model.safetensors").is_file() and not (ckpt / "model.safetensors").exists()


@pytest.mark.parametrize("strategy", ["ddp", "zero2", "zero3", "fsdp2"])
def test_lora_bf16_base_and_float32_adapter_checkpoint(strategy, micro_model_dir, tmp):
    """model.dtype=bfloat16: the frozen base is loaded in bf16 (it was float32: 2x the memory), the adapters train in
    float32, and the checkpoint's adapter file holds the float32 masters, gathered alone (the frozen base is not
    gathered to rank 0). Under ZeRO the module holds bf16 copies of the adapters; before, the checkpoint was written
    from those (rounded A/B), so an export merged rounded adapters."""
    out = tmp / f"{strategy}_bf16"
    out.mkdir()
    launch(strategy, micro_model_dir, out / "run.pt", "--steps", 2, "--save-after", 2, "--ckpt", out / "ckpt",
           *LORA, "model.dtype=bfloat16")
    run = torch.load(out / "run.pt")
    assert (run["strategy"], run["mixed_precision"]) == (strategy, "bf16")
    adapter = load_file(out / "ckpt/checkpoint-2/adapter_model.safetensors")
    # float32 masters: DeepSpeed's optimizer copies under ZeRO, the (float32) parameters themselves elsewhere
    masters = run["master_weights"] if strategy.startswith("zero") else run["adapters"]
    assert len(adapter) == 2 * 4 * 2  # A and B of 4 projections in 2 layers
    rounded = 0
    for name, tensor in adapter.items():
        key = name.removeprefix("base_model.model.").replace(".weight", ".default.weight")
        assert tensor.dtype == torch.float32
        torch.testing.assert_close(tensor, masters[key].float(), rtol=0, atol=0, msg=name)
        rounded += int(not torch.equal(tensor, tensor.bfloat16().float()))
    assert rounded == len(adapter)  # every adapter tensor carries more than bf16's 8 mantissa bits
