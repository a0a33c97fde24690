"""Launched on 2 processes by tests/e2e/test_sharded_eval.py: the recipe's train.dist_timeout_s in the process group
that make_accelerator creates, and gather_objects in rank order. Prints one line per rank."""
import json
import os
import sys

from rl.config.grpo import GRPOConfig
from rl.config.recipe import load_config
from rl.train.distributed import gather_objects, make_accelerator, process_group_timeout_s, strategy

cfg = load_config(GRPOConfig, "recipes/tiny/r1_zero.yaml", [f"train.dist_timeout_s={sys.argv[1]}"])
accelerator = make_accelerator(cfg)
rank = accelerator.process_index
items = [f"r{rank}-{i}" for i in range(3 - rank)]  # rank 0 holds 3 items, rank 1 two
print("RESULT " + json.dumps({"rank": rank, "strategy": strategy(accelerator), "timeout_s": process_group_timeout_s(),
                              "gathered": gather_objects(items)}), flush=True)
accelerator.end_training()
# Leave without the interpreter's teardown, as tests/e2e/learner_steps.py does: under FSDP2 on 2 gloo ranks a rank
# intermittently aborts after this point ("terminate called without an active exception", exit -6; 1 launch in 12,
# with or without train.dist_timeout_s reaching the group), after its line is printed.
sys.stdout.flush()
os._exit(0)
