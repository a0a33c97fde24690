"""K GRPO learner steps on fixed batches, under whatever launcher runs this script; rank 0 saves what tests compare.

    python tests/e2e/learner_steps.py MODEL_DIR OUT.pt [--steps 3] [--save-after 1 --ckpt DIR] [--resume DIR] [--skew]
                                      [--groups]
                                      [a.b=c ...]
    accelerate launch --config_file <strategy config> --num_processes 2 tests/e2e/learner_steps.py ...   (CPU: see
    tests/e2e/launch.py for the adaptations)

Step s trains on the same 8 rows whatever the number of processes W: rank r takes rows [r*8/W, (r+1)*8/W) of the
batch built from seed s (advantages included, so no rollouts and no sampling: only the learner differs); with --skew
the rows are first ordered longest first, so rank 0 holds the longest rows (a token imbalance between ranks); with
--groups the 8 rows are 2 groups of 4 sharing a prompt (tests/train/test_shared_prompts.py `grouped_make_batch`), as
GRPO's are, so packed micro-batches share prompts (train.share_prompts). Saved:

    {"world", "strategy", "mixed_precision",
     "steps": [{"step", "loss" (mean over ranks = the 1-process loss), "grad_norm", "lr", "kl" (rank 0's, beta > 0),
                "train/...": rank 0's train/* metrics (micro-batches, rank token balance), flat}, ...],
     "weights": {name: tensor}   after the last step, from Learner.full_named_parameters() (the vLLM push path),
     "adapters": {name: tensor}  with model.lora.enabled: the LoRA A/B tensors themselves (else empty),
     "master_weights": {name: float32 tensor}   the optimizer's float32 masters (DeepSpeed keeps them apart from the
                         bf16 module weights under bf16; elsewhere the module weights are the masters),
     "logprobs_dtype": str, "logprobs": [n, C] float32, "inner_logprobs": [n, C]   one forward of the prepared model
                         on step 1's rows before training: what the strategy's wrapper returns, and what the policy's
                         own forward computed inside it (before any output cast of FSDP2's mixed precision),
     "mp_policy": {"param_dtype", "reduce_dtype", "output_dtype"} of every FSDP2 module (FSDP2 only),
     "reference_gap": max |reference - policy logprobs| on step 1's rows before training (beta > 0 only)}

With --save-after k a checkpoint is written after step k (rl/train/checkpoint.py); --resume DIR loads one and runs steps
k+1..K, so "save, resume, continue" can be compared with a straight run.
"""
import argparse
import os
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[2]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("model_dir")
    ap.add_argument("out")
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--save-after", type=int, default=0)
    ap.add_argument("--ckpt", default=None)
    ap.add_argument("--resume", default=None)
    ap.add_argument("--skew", action="store_true")
    ap.add_argument("--groups", action="store_true")
    args, overrides = ap.parse_known_args()  # the rest: recipe overrides a.b=c
    sys.path.insert(0, str(ROOT / "tests" / "train"))
    from test_learner import make_batch  # tests/train/test_learner.py
    if args.groups:
        from test_shared_prompts import grouped_make_batch as make_batch  # noqa: F811

    from rl.train.checkpoint import load_training_state, save_checkpoint
    from rl.config.recipe import load_config
    from rl.train.distributed import make_accelerator, strategy
    from rl.config.grpo import GRPOConfig
    from rl.train.learner import POLICY_PREFIX, Learner
    from rl.train.models import load_policy_and_reference, load_tokenizer

    import os
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rows = 8
    per = rows // world
    cfg = load_config(GRPOConfig, str(ROOT / "recipes/tiny/r1_zero.yaml"), [
        f"train.batch_size={per}", "train.micro_batch_size=2", "rollout.group_size=2",
        "rollout.max_completion_length=8", "train.learning_rate=1e-3", "train.lr_scheduler=linear",
        "train.warmup_steps=1", f"train.max_steps={args.steps + 1}", "train.max_grad_norm=1.0",
        "train.max_tokens_per_micro_batch=0",  # fixed rows unless a cell sets a budget (the tiny recipe packs)
        *overrides])
    accelerator = make_accelerator(cfg)
    rank = accelerator.process_index
    tok = load_tokenizer(args.model_dir)
    torch.manual_seed(0)
    # as rl/grpo.py loads them (LoRA: the reference is the policy with its adapters disabled, never a second model)
    policy, ref = load_policy_and_reference(args.model_dir, cfg.model, cfg.algorithm.beta)
    learner = Learner(cfg, accelerator, policy, ref)
    probe = make_batch(tok, n=rows, seed=1).slice(rank * per, (rank + 1) * per)
    probe_out = probe_forward(learner, probe)
    if learner.ref_model is not None:  # reference vs policy before any update: the same function, same micro-batches
        from rl.core.episode import BATCH_FIELDS, Batch
        on_device = Batch(*(None if t is None else t.to(accelerator.device)
                            for t in (getattr(probe, f) for f in BATCH_FIELDS)))
        probe_out["reference_gap"] = (learner.reference_logprobs(probe) -
                                      learner._frozen_logprobs(learner.model, on_device)).abs().max().item()
    first = 1
    if args.resume:
        first = load_training_state(accelerator, Path(args.resume), learner.scheduler)["step"] + 1
    steps = []
    for step in range(first, args.steps + 1):
        batch = make_batch(tok, n=rows, seed=step)
        if args.skew:
            from rl.core.collate import by_length
            batch = by_length(batch)[0]
        batch = batch.slice(rank * per, (rank + 1) * per)
        metrics = learner.step(batch)
        loss = accelerator.reduce(torch.tensor([metrics["loss"]], device=accelerator.device), "mean").item()
        steps.append({"step": step, "loss": loss, "grad_norm": metrics["grad_norm"], "lr": metrics["lr"],
                      "kl": metrics.get("kl"),
                      **{k: v for k, v in metrics.items() if k.startswith("train/")}})
        if step == args.save_after:
            save_checkpoint(accelerator, args.ckpt, step, learner.model, tok, learner.scheduler,
                            {"sampler_position": 0}, weights_prefix=POLICY_PREFIX,
                            write_weights=learner.checkpoint_writer, gather_weights=learner.checkpoint_gather)
    weights = {name: t.detach().float().cpu().clone() for name, t in learner.full_named_parameters()}
    adapters = {}  # LoRA: the trained A and B themselves (the pushed `weights` are merged)
    if learner.lora is not None:
        from rl.train.distributed import iter_full_params
        adapters = {name: t.detach().float().cpu().clone()
                    for name, t in iter_full_params(learner.model, prefix=POLICY_PREFIX) if "lora_" in name}
    masters = master_weights(learner)
    if accelerator.is_main_process:
        torch.save({"world": world, "strategy": strategy(accelerator), "mixed_precision": accelerator.mixed_precision,
                    "steps": steps, "weights": weights, "adapters": adapters, "master_weights": masters,
                    **probe_out}, args.out)
    accelerator.wait_for_everyone()
    accelerator.end_training()
    # Every result is written and the process group destroyed: leave without the interpreter's teardown. Under FSDP2 +
    # LoRA on 2 gloo ranks, a rank intermittently aborted *after* this point ("terminate called without an active
    # exception", exit -6; twice in one clean-clone run, never when rerun alone) and the launcher reported the test
    # as failed although its results were complete. (Not understood; rl/grpo.py is not changed by this.)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


def probe_forward(learner, batch) -> dict:
    """One no-grad forward of the prepared model; the policy's own forward is recorded from inside the wrapper
    (an instance attribute: nn.Module.__call__ runs FSDP2's pre/post-forward hooks around it)."""
    from rl.core.collate import trim_padding
    from rl.train.distributed import strategy
    model, inner = learner.model, {}
    policy = learner.accelerator.unwrap_model(model)
    forward = policy.forward

    def recording(*a, **kw):
        out = forward(*a, **kw)
        inner["logprobs"] = out[0].detach().clone()
        return out
    policy.forward = recording
    mb = trim_padding(batch.slice(0, len(batch)))
    device = learner.accelerator.device
    with torch.no_grad():
        logprobs, _ = model(mb.input_ids.to(device), mb.attention_mask.to(device), mb.completion_mask.to(device),
                            learner.cfg.rollout.temperature)
    policy.forward = forward
    out = {"logprobs_dtype": str(logprobs.dtype), "logprobs": logprobs.float().cpu(),
           "inner_logprobs": inner["logprobs"].float().cpu()}
    if strategy(learner.accelerator) == "fsdp2":
        from torch.distributed.fsdp import FSDPModule
        out["mp_policy"] = sorted({tuple(str(getattr(m._get_fsdp_state()._mp_policy, k)) for k in
                                         ("param_dtype", "reduce_dtype", "output_dtype"))
                                   for m in model.modules() if isinstance(m, FSDPModule)})
    return out


def master_weights(learner) -> dict:
    """{name: float32 master} (collective under ZeRO-3): DeepSpeed's own copies under DeepSpeed, else the weights.
    Frozen parameters (LoRA's base) have no master copy: under DeepSpeed only the trainable ones are returned."""
    from rl.train.distributed import clean_name, strategy
    from rl.train.learner import POLICY_PREFIX
    if not strategy(learner.accelerator).startswith("zero"):
        return {name: t.detach().float().cpu().clone() for name, t in learner.full_named_parameters()}
    from deepspeed.utils import safe_get_full_fp32_param
    return {clean_name(n, POLICY_PREFIX): safe_get_full_fp32_param(p).detach().cpu().clone()
            for n, p in learner.model.module.named_parameters() if p.requires_grad}


if __name__ == "__main__":
    main()
