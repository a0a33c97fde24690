"""Every multi-process strategy == one process, on 2 CPU processes (gloo), launched as users launch them:

    accelerate launch --config_file recipes/accelerate/<ddp|zero2|zero3|fsdp2>.yaml --num_processes 2 ...

with the real DeepSpeed 0.19.8 and torch FSDP2 (rl/train/distributed.py holds the CPU adaptations). The script is
tests/e2e/learner_steps.py: 3 learner steps (linear LR schedule with warmup, clipping, AdamW lr 1e-3, dapo loss) on
fixed 8-row batches, each process holding half of them, with a KL term to a reference model (beta 0.5) and gradient
checkpointing. Compared with one plain process:

  - loss, gradient norm and learning rate of every step (the LR used to run num_processes times too fast);
  - every parameter after the last step, as `Learner.full_named_parameters()` yields it: the very iterator the vLLM
    engine consumes (one module at a time under ZeRO-3, DTensor.full_tensor under FSDP2), so the names and values an
    engine receives;
  - the consolidated Hugging Face weights of the checkpoint written after step 1;
  - save after step 1, resume in a fresh launch, run steps 2-3: the same numbers and weights as the straight run.
"""
import os
import json
import signal
import socket
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file
from torch.nn.functional import cosine_similarity

from tests.conftest import ROOT

pytestmark = pytest.mark.slow
SCRIPT = str(ROOT / "tests/e2e/learner_steps.py")
STRATEGIES = ["ddp", "zero2", "zero3", "fsdp2"]
# a KL term (the reference model is sharded like the policy under ZeRO-3/FSDP2) and gradient checkpointing, as the
# real recipes use it
WITH_REFERENCE = ["algorithm.beta=0.5", "model.gradient_checkpointing=true"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run(cmd, timeout=600):
    """Run a launcher; on timeout kill its whole process group (the launcher's workers too) and fail."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT),
           "TOKENIZERS_PARALLELISM": "false"}
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        pytest.fail(f"{' '.join(cmd[:6])}... did not finish in {timeout}s (hang):\n{err[-3000:]}")
    assert proc.returncode == 0, out[-2000:] + err[-4000:]
    return subprocess.CompletedProcess(cmd, proc.returncode, out, err)


def launch(strategy, *args):
    if strategy == "single":
        return run([sys.executable, SCRIPT, *map(str, args)])
    return run([sys.executable, "-m", "accelerate.commands.launch", "--config_file",
                str(ROOT / f"recipes/accelerate/{strategy}.yaml"), "--num_processes", "2",
                "--main_process_port", str(free_port()), SCRIPT, *map(str, args)])


_runs: dict = {}


def runs(strategy, model_dir, tmp):
    """(straight 3-step run with a checkpoint after step 1, resumed run of steps 2-3), computed once per strategy."""
    if strategy not in _runs:
        out = tmp / strategy
        out.mkdir()
        launch(strategy, model_dir, out / "straight.pt", "--save-after", 1, "--ckpt", out / "ckpt", *WITH_REFERENCE)
        resumed = None
        if strategy != "single":
            launch(strategy, model_dir, out / "resumed.pt", "--resume", out / "ckpt/checkpoint-1",
                   *WITH_REFERENCE)
            resumed = torch.load(out / "resumed.pt")
        _runs[strategy] = (torch.load(out / "straight.pt"), resumed,
                           load_file(out / "ckpt/checkpoint-1/model.safetensors"))
    return _runs[strategy]


@pytest.fixture(scope="module")
def tmp(tmp_path_factory):
    return tmp_path_factory.mktemp("strategies")


def assert_same_weights(got, want, atol):
    assert sorted(got) == sorted(want)  # every parameter, none missing, none extra
    for name, value in want.items():
        torch.testing.assert_close(got[name].float(), value.float(), rtol=0, atol=atol, msg=name)


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_two_processes_equal_one(strategy, micro_model_dir, tmp):
    one, _, one_ckpt = runs("single", micro_model_dir, tmp)
    two, _, two_ckpt = runs(strategy, micro_model_dir, tmp)
    assert (one["world"], two["world"], two["strategy"]) == (1, 2, strategy)
    assert [s["lr"] for s in two["steps"]] == [s["lr"] for s in one["steps"]]
    assert [s["lr"] for s in one["steps"]] == pytest.approx([5e-4, 1e-3, 1e-3 * 2 / 3])  # warmup 1, linear to 4
    for a, b in zip(one["steps"], two["steps"]):
        assert b["loss"] == pytest.approx(a["loss"], rel=1e-5, abs=1e-6)
        assert b["grad_norm"] == pytest.approx(a["grad_norm"], rel=1e-5)
    assert one["steps"][0]["grad_norm"] > 0.1
    assert_same_weights(two["weights"], one["weights"], atol=1e-5)  # what the rollout engine receives
    # the checkpoint's Hugging Face weights: complete and right (tied lm_head may be stored or not)
    two_ckpt = {k: v for k, v in two_ckpt.items() if k in one_ckpt or k != "lm_head.weight"}
    assert_same_weights(two_ckpt, one_ckpt, atol=1e-5)


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_save_then_resume_continues_exactly(strategy, micro_model_dir, tmp):
    straight, resumed, _ = runs(strategy, micro_model_dir, tmp)
    assert [s["step"] for s in resumed["steps"]] == [2, 3]
    for a, b in zip(straight["steps"][1:], resumed["steps"]):
        assert b == pytest.approx(a, rel=1e-6, abs=1e-7)
    assert_same_weights(resumed["weights"], straight["weights"], atol=1e-7)


def reference_run(strategy, dtype, model_dir, tmp):
    """One learner step with the KL term (beta 0.5) in `dtype`, computed once per (strategy, dtype); float32 reuses
    the 3-step runs above."""
    if dtype == "float32":
        return runs(strategy, model_dir, tmp)[0]
    key = ("reference", strategy, dtype)
    if key not in _runs:
        out = tmp / f"{strategy}_{dtype}_reference.pt"
        launch(strategy, model_dir, out, "--steps", 1, f"model.dtype={dtype}", *WITH_REFERENCE)
        _runs[key] = torch.load(out)
    return _runs[key]


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
@pytest.mark.parametrize("strategy", ["single", *STRATEGIES])
def test_reference_kl_is_zero_at_the_first_step(strategy, dtype, micro_model_dir, tmp):
    """beta > 0: at the first step the reference has the policy's weights, so under every strategy and precision it
    must compute the policy's logprobs and the KL must be 0 (to float rounding). Before, the reference was loaded in
    bf16 and run without autocast while single/DDP/FSDP2 ran the policy's float32 weights under bf16 autocast."""
    run = reference_run(strategy, dtype, micro_model_dir, tmp)
    assert run["mixed_precision"] == {"float32": "no", "bfloat16": "bf16"}[dtype]
    assert run["steps"][0]["step"] == 1
    assert abs(run["steps"][0]["kl"]) < 1e-6
    # the logprobs themselves (the micro model's KL is small even when they differ: before, bf16 single/DDP/FSDP2
    # had max |dlogp| ~2e-3 and a k3 KL under 1e-6)
    assert run["reference_gap"] < 1e-6


BF16_STEPS = ["--steps", 10, "train.learning_rate=1e-6", "train.lr_scheduler=constant", "train.warmup_steps=0"]


def low_lr_run(strategy, dtype, model_dir, tmp):
    """10 learner steps at lr 1e-6 (the real recipes' rate), computed once per (strategy, dtype)."""
    key = ("low_lr", strategy, dtype)
    if key not in _runs:
        out = tmp / f"{strategy}_{dtype}.pt"
        ckpt = tmp / f"{strategy}_{dtype}_ckpt"
        launch(strategy, model_dir, out, *BF16_STEPS, f"model.dtype={dtype}", "--save-after", 10, "--ckpt", ckpt)
        _runs[key] = {**torch.load(out), "ckpt": ckpt / "checkpoint-10"}
    return _runs[key]


@pytest.mark.parametrize("strategy", ["single", "zero3", "fsdp2"])
def test_bf16_moves_weights_like_fp32(strategy, micro_model_dir, tmp):
    """model.dtype=bfloat16 at lr 1e-6 must update the float32 master weights like a float32 run (the reference: one
    process, float32, the same 8 rows per step; 2 processes in float32 equal it to 1e-5, test_two_processes_equal_one).

    Where the masters live: single = the module's float32 weights under bf16 autocast; FSDP2 = float32 DTensor shards
    with MixedPrecisionPolicy(param_dtype=bf16); ZeRO-3 = DeepSpeed's float32 optimizer partitions, while the module
    holds bf16 partitions (deepspeed.zero.Init casts at load; the weights guard used to refuse this launch). ZeRO-3's
    masters start from bf16(w0), so its update is measured from there.

    Tolerances: the runs differ only by bf16 rounding of weights/activations in forward and backward (relative 2^-8
    per operation), which perturbs each gradient by ~1% or less; AdamW's m / sqrt(v) normalises the update, so over
    10 steps each coordinate moves by about lr * 10 in either case and the direction follows the gradient signs. A
    norm ratio within 5% and a cosine > 0.99 (measured: 1.00004-1.00005 and 0.9997 on 2026-12-01) leave room for the
    rounding and catch the failure modes: bf16 weights under AdamW (before: 1.9% of weights moved, 12% of the norm)
    and updates lost or duplicated across ranks (ratio 0.5 or 2, cosine far below 1)."""
    w0 = load_file(micro_model_dir / "model.safetensors")
    fp32, bf16 = low_lr_run("single", "float32", micro_model_dir, tmp), low_lr_run(strategy, "bfloat16",
                                                                                  micro_model_dir, tmp)
    assert (fp32["mixed_precision"], bf16["mixed_precision"], bf16["strategy"]) == ("no", "bf16", strategy)
    start = {k: (v.bfloat16() if strategy == "zero3" else v).float() for k, v in w0.items()}
    d32 = torch.cat([(fp32["weights"][k] - w0[k]).flatten() for k in sorted(w0)])
    d16 = torch.cat([(bf16["master_weights"][k] - start[k]).flatten() for k in sorted(w0)])
    moved, ratio, cosine = (d16 != 0).float().mean(), d16.norm() / d32.norm(), cosine_similarity(d16, d32, dim=0)
    print(f"{strategy} bf16 vs single fp32: moved {moved:.4f}, norm ratio {ratio:.5f}, cosine {cosine:.5f}")
    assert moved > 0.99  # (almost) every weight moved
    assert ratio == pytest.approx(1.0, abs=0.05)
    assert cosine > 0.99
    if strategy == "zero3":  # what the engine and the checkpoint get: the bf16 module weights, = masters rounded
        for k in w0:
            torch.testing.assert_close(bf16["weights"][k], bf16["master_weights"][k].bfloat16().float(), rtol=0,
                                       atol=0)
    # the checkpoint's config says the dtype its tensors are stored in (ZeRO-3: bf16; elsewhere the float32 masters)
    config = json.loads((bf16["ckpt"] / "config.json").read_text())
    stored = {str(t.dtype).removeprefix("torch.") for t in load_file(bf16["ckpt"] / "model.safetensors").values()}
    assert stored == {config["dtype"]} == {"bfloat16" if strategy == "zero3" else "float32"}
    # logprobs (and so ratios, KL, entropy) float32 whatever the strategy (FSDP2's bf16 policy used to round them)
    assert bf16["logprobs_dtype"] == "torch.float32"
    torch.testing.assert_close(bf16["logprobs"], bf16["inner_logprobs"], rtol=0, atol=0)


def test_fsdp2_bf16_keeps_logprobs_and_gradient_reduction_in_float32(micro_model_dir, tmp):
    """accelerate 1.15's FSDP2 bf16 policy is (param bf16, reduce bf16, output bf16): the logprobs computed in float32
    inside the root forward came back rounded (max |error| 0.0156 nats on this batch before the fix) and gradients
    were reduced in bf16. rl/train/distributed.py replaces it with verl's (param bf16, reduce fp32, no output cast):
    the wrapper's output is bit-identical to what the policy's forward computed, on every FSDP2 module."""
    run = low_lr_run("fsdp2", "bfloat16", micro_model_dir, tmp)
    assert run["mp_policy"] == [("torch.bfloat16", "torch.float32", "None")]
    assert run["logprobs_dtype"] == "torch.float32"
    torch.testing.assert_close(run["logprobs"], run["inner_logprobs"], rtol=0, atol=0)
    assert run["logprobs"].abs().max() > 0.1  # a real probe, not all-masked zeros


def grpo_overrides(model_dir, out):
    return ["recipes/tiny/r1_zero.yaml", f"model.name_or_path={model_dir}", f"output_dir={out}", "train.max_steps=3",
            "train.batch_size=8", "rollout.group_size=4", "train.micro_batch_size=4",
            "rollout.max_completion_length=12", "data.num_train=64", "data.num_test=8", "data.max_eval_samples=8",
            "logging.save_every=2", "logging.progress_bar=false", "algorithm.dynamic_sampling=true",
            "algorithm.max_sampling_rounds=3", "resume=auto"]


def launch_grpo(strategy, *args):
    return run([sys.executable, "-m", "accelerate.commands.launch", "--config_file",
                str(ROOT / f"recipes/accelerate/{strategy}.yaml"), "--num_processes", "2",
                "--main_process_port", str(free_port()), "rl/grpo.py", *args])


@pytest.mark.parametrize("strategy", ["zero3", "fsdp2"])
def test_grpo_entry_point_under_sharded_strategies(strategy, tmp):
    """rl/grpo.py under ZeRO-3 / FSDP2 on 2 processes with the transformers engine (every forward is collective:
    lock-step decoding, evaluation on all ranks), DAPO dynamic sampling (ranks refill different numbers of prompts
    through the collective sampler), gathered weight pushes and checkpoints. ZeRO-3 also resumes from checkpoint-2
    (after deleting checkpoint-3) and must redo step 3 exactly, sampler position included."""
    from rl.tiny.sources import resolve_model_path
    from rl.train.tracking import read_metrics
    model = resolve_model_path("tiny")  # the tiny base model: rewards vary, so groups are kept and dropped
    out = tmp / f"grpo_{strategy}"
    launch_grpo(strategy, *grpo_overrides(model, out))
    straight = read_metrics(out)
    train = [m for m in straight if "loss" in m]
    assert [m["step"] for m in train] == [1, 2, 3]
    assert [m["step"] for m in straight if "eval/accuracy" in m] == [0, 3]
    assert all(0 <= m["dynamic_sampling/dropped_frac"] < 1 for m in train)
    state = (out / "checkpoint-2/trainer_state.json").read_text()
    assert '"sampler_position"' in state
    if strategy != "zero3":
        return
    import json
    import shutil
    shutil.rmtree(out / "checkpoint-3")
    launch_grpo(strategy, *grpo_overrides(model, out))  # resume=auto: from checkpoint-2, logs rewound to step 2
    resumed = read_metrics(out)
    assert [m["step"] for m in resumed] == [m["step"] for m in straight]
    want, got = train[2], next(m for m in resumed if m["step"] == 3 and "loss" in m)
    for key, value in want.items():
        if not (key.startswith("time/") or key.endswith("time_s")):
            assert got[key] == pytest.approx(value, rel=1e-5, abs=1e-6), key
    assert json.loads((out / "checkpoint-3/trainer_state.json").read_text())["sampler_position"] > 0
