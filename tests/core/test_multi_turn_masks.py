"""Multi-turn episodes in the pure math: collate copies the per-token mask (0 on the environment's tokens), and
every registered loss (surrogate x aggregation, with and without KL) treats those tokens as absent: the loss and the
gradients equal those of the same rows with the environment's tokens cut out."""
import itertools

import pytest
import torch

from rl.core.collate import collate
from rl.core.episode import Completion, Episode
from rl.core.losses import AGGREGATIONS, SURROGATES, Normalizer, k3_kl, policy_loss

EOS, PAD = 2, 0


def test_collate_copies_the_episode_mask():
    # the docstring's example: completion [7, 8, 30, 31, 9, EOS], 30 and 31 a tool's output
    multi = Completion([5, 6], [7, 8, 30, 31, 9, EOS], "", "stop", [-1.0, -1.0, 0.0, 0.0, -1.0, -1.0],
                       mask=[1, 1, 0, 0, 1, 1])
    single = Completion([4], [9], "", "stop", [-0.5])  # mask None: every token is the policy's
    batch = collate([Episode(0, {}, multi), Episode(1, {}, single)], PAD)
    assert batch.completion_mask.tolist() == [[1, 1, 0, 0, 1, 1], [1, 0, 0, 0, 0, 0]]
    truncated = Completion([5], [7, 30, 8], "", "length", [-1.0, 0.0, -1.0], mask=[1, 0, 1])
    assert collate([Episode(0, {}, truncated)], PAD, mask_truncated_completions=True).completion_mask.sum() == 0


# rows of C = 6: row 0 = policy, policy, tool, tool, policy, policy; row 1 = policy, user turn, policy x 2, padding
MASK = torch.tensor([[1., 1., 0., 0., 1., 1.], [1., 0., 1., 1., 0., 0.]])
ADV = torch.tensor([0.7, -1.3])


def _compact(t: torch.Tensor) -> torch.Tensor:
    """The policy's tokens of each row laid end to end (right padding 0): [[a, b, -, -, c, d], [e, -, f, g, -, -]]
    -> [[a, b, c, d], [e, f, g, 0]]."""
    rows = [t[i][MASK[i].bool()] for i in range(len(t))]
    out = torch.zeros(len(rows), max(len(r) for r in rows))
    for i, r in enumerate(rows):
        out[i, :len(r)] = r
    return out


@pytest.mark.parametrize("surrogate, aggregation, beta", list(itertools.product(SURROGATES, AGGREGATIONS, [0.0, 0.1])))
def test_every_loss_ignores_the_environments_tokens(surrogate, aggregation, beta):
    g = torch.Generator().manual_seed(0)
    logp = -torch.rand(2, 6, generator=g) * 2  # [2, 6] arbitrary, also on the environment's tokens
    old = logp + torch.randn(2, 6, generator=g) * 0.3  # ratios away from 1, some clipped
    ref = logp + torch.randn(2, 6, generator=g) * 0.3
    norm = Normalizer(num_sequences=2, num_tokens=float(MASK.sum()), global_num_tokens=float(MASK.sum()),
                      max_completion_length=6)  # 7 policy tokens; the recipe's max_completion_length

    def run(lp, o, r, m):
        lp = lp.clone().requires_grad_(True)
        loss, _ = policy_loss(lp, ADV, m, norm, aggregation=AGGREGATIONS[aggregation], epsilon_low=0.2,
                              epsilon_high=0.2, beta=beta, old_logprobs=o, ref_logprobs=r,
                              surrogate=SURROGATES[surrogate], kl_estimator=k3_kl)
        loss.backward()
        return loss, lp.grad

    loss, grad = run(logp, old, ref, MASK)
    cmask = _compact(MASK)
    loss_c, grad_c = run(_compact(logp), _compact(old), _compact(ref), cmask)
    torch.testing.assert_close(loss, loss_c)
    torch.testing.assert_close(_compact(grad), grad_c * cmask)  # the same gradient on the policy's tokens
    assert grad[MASK == 0].abs().sum() == 0  # and none on the environment's
