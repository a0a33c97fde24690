"""Run under torchrun (2 processes) or plainly (1 process): gradients of one learner pass over a fixed batch of 8,
for each loss mode given (comma-separated; one process start-up for all of them).

Each of W processes takes rows [r*8/W, (r+1)*8/W); DDP averages the gradients. Rank 0 saves {mode: result} to argv[2].
    torchrun --nproc_per_node 2 tests/e2e/ddp_grads.py MODEL_DIR OUT.pt grpo,dapo,dr_grpo
"""
import os
import sys

import torch


def main():
    model_dir, out, modes = sys.argv[1], sys.argv[2], sys.argv[3].split(",")
    sys.path.insert(0, str(__import__("pathlib").Path(__file__).resolve().parents[1] / "train"))
    from test_learner import make_batch  # noqa: E402  (tests/train/test_learner.py)

    from rl.config.recipe import load_config
    from rl.train.distributed import make_accelerator
    from rl.config.grpo import GRPOConfig
    from rl.train.learner import Learner
    from rl.train.models import load_causal_lm, load_tokenizer

    results = {}
    for mode in modes:
        world = int(os.environ.get("WORLD_SIZE", "1"))
        per = 8 // world
        cfg = load_config(GRPOConfig, "recipes/tiny/r1_zero.yaml",
                          [f"algorithm.loss={mode}", f"train.batch_size={per}", "rollout.group_size=2",
                           "train.micro_batch_size=2", "rollout.max_completion_length=8",
                           "train.max_tokens_per_micro_batch=0"])  # fixed rows (the tiny recipe packs)
        accelerator = make_accelerator(cfg)
        rank = accelerator.process_index
        torch.manual_seed(0)
        learner = Learner(cfg, accelerator, load_causal_lm(model_dir), None)
        batch = make_batch(load_tokenizer(model_dir), n=8).slice(rank * per, (rank + 1) * per)
        prepared, norm = learner.prepare(batch)
        sums = learner.accumulate_gradients(prepared, norm)
        loss = accelerator.reduce(torch.tensor([sums["loss"]]), reduction="mean").item()
        grads = torch.cat([p.grad.flatten() for p in learner.model.parameters() if p.grad is not None])
        results[mode] = {"grads": grads, "loss": loss, "world": world}
    if accelerator.is_main_process:
        torch.save(results, out)

if __name__ == "__main__":
    main()
