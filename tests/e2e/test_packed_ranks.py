"""Token-budget micro-batches on 2 CPU processes (gloo) == 1 process (issue 31): rows dealt out again so both ranks
train about the same number of tokens, and both run the same number of micro-batches.

tests/e2e/learner_steps.py --skew gives rank 0 the 4 longest of the 8 rows (lengths 11, 11, 11, 8 against 8, 8, 5, 5:
41 vs 26 tokens). `balance_ranks` over [11, 11, 11, 8, 8, 8, 5, 5] (by hand, rl/core/packing.py): 11 -> r0, 11 -> r1,
11 -> r0 (22), 8 -> r1 (19), 8 -> r1 (27), 8 -> r0 (30), 5 -> r1 (32), 5 -> r0 (35): 35 vs 32 tokens, imbalance
(max / mean) 41 / 33.5 = 1.224 before, 35 / 33.5 = 1.045 after (the best 4-row split of these lengths).
Budget 16: r0 [11, 11, 8, 5] -> bins (11 5) (11) (8) = 3; r1 [11, 8, 8, 5] -> (11 5) (8 8) = 2, split to 3.
"""
import pytest
import torch

from tests.e2e.test_strategies import assert_same_weights, launch

pytestmark = pytest.mark.slow
PACKED = ["algorithm.loss=dapo", "train.max_tokens_per_micro_batch=16", "--skew"]


@pytest.fixture(scope="module")
def one_process(micro_model_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("packed") / "one.pt"
    launch("single", micro_model_dir, out, *PACKED)
    return torch.load(out)


# DDP: gradients synchronised on the last micro-batch only; ZeRO-3 / FSDP2: every forward and backward is a
# collective, so a rank running fewer micro-batches than the other would hang it. FSDP2 in `make test-matrix`.
@pytest.mark.parametrize("strategy", ["ddp", "zero3", pytest.param("fsdp2", marks=pytest.mark.matrix)])
def test_balanced_two_processes_equal_one(strategy, micro_model_dir, one_process, tmp_path):
    launch(strategy, micro_model_dir, tmp_path / "two.pt", *PACKED)
    one, two = one_process, torch.load(tmp_path / "two.pt")
    assert (one["world"], two["world"], two["strategy"]) == (1, 2, strategy)
    for a, b in zip(one["steps"], two["steps"]):
        assert b["loss"] == pytest.approx(a["loss"], rel=1e-5, abs=1e-6)
        assert b["grad_norm"] == pytest.approx(a["grad_norm"], rel=1e-5)
        assert b["train/rank_token_imbalance_before"] == pytest.approx(41 / 33.5)
        assert b["train/rank_token_imbalance"] == pytest.approx(35 / 33.5)
        assert b["train/micro_batches"] == 3  # both ranks (rank 1 split its 2 bins to 3)
    assert one["steps"][0]["grad_norm"] > 0.1
    assert_same_weights(two["weights"], one["weights"], atol=1e-5)


@pytest.mark.matrix
def test_shared_prompt_groups_two_processes_equal_one(micro_model_dir, tmp_path):
    """Rows in 2 groups of 4 sharing a prompt (--groups), shared prompts on (the default), DDP on 2 processes == 1:
    the groups are dealt whole, one per rank (2 groups of equal size deal evenly), each rank's micro-batches share
    its group's prompt, and the loss, grad norm and weights are the 1-process run's."""
    args = [*PACKED, "--groups"]
    launch("single", micro_model_dir, tmp_path / "one.pt", *args)
    launch("ddp", micro_model_dir, tmp_path / "two.pt", *args)
    one, two = torch.load(tmp_path / "one.pt"), torch.load(tmp_path / "two.pt")
    for a, b in zip(one["steps"], two["steps"]):
        assert b["loss"] == pytest.approx(a["loss"], rel=1e-5, abs=1e-6)
        assert b["grad_norm"] == pytest.approx(a["grad_norm"], rel=1e-5)
        assert a["train/prompt_tokens_shared_frac"] > 0 and b["train/prompt_tokens_shared_frac"] > 0
    assert one["steps"][0]["grad_norm"] > 0.1
    assert_same_weights(two["weights"], one["weights"], atol=1e-5)


@pytest.mark.matrix
def test_balanced_two_processes_equal_one_in_bf16(micro_model_dir, tmp_path):
    """DDP x bf16 autocast (make test-matrix): the same packed, balanced steps in bf16 on 2 processes and on 1. The
    rows of a micro-batch differ between the two runs (balanced ranks vs all rows on one), so bf16 rounding differs:
    loss and grad norm within 2%, and the weight updates (final - initial) point the same way (cosine > 0.99) with
    the same size (norm ratio within 2%)."""
    from rl.train.models import load_causal_lm
    bf16 = [*PACKED, "model.dtype=bfloat16"]
    launch("single", micro_model_dir, tmp_path / "one.pt", *bf16)
    launch("ddp", micro_model_dir, tmp_path / "two.pt", *bf16)
    one, two = torch.load(tmp_path / "one.pt"), torch.load(tmp_path / "two.pt")
    assert (one["mixed_precision"], two["mixed_precision"]) == ("bf16", "bf16")
    for a, b in zip(one["steps"], two["steps"]):
        assert b["loss"] == pytest.approx(a["loss"], rel=2e-2, abs=1e-4)
        assert b["grad_norm"] == pytest.approx(a["grad_norm"], rel=2e-2)
        assert b["train/rank_token_imbalance"] == pytest.approx(35 / 33.5)
    start = {n: t.float() for n, t in load_causal_lm(str(micro_model_dir)).state_dict().items()}
    names = sorted(one["weights"])
    up1 = torch.cat([(one["weights"][n] - start[n]).flatten() for n in names])
    up2 = torch.cat([(two["weights"][n] - start[n]).flatten() for n in names])
    assert up1.norm() > 1e-2
    assert torch.nn.functional.cosine_similarity(up1, up2, dim=0) > 0.99
    assert float(up2.norm() / up1.norm()) == pytest.approx(1.0, abs=2e-2)
