"""Chunked LM-head logprobs == the plain [N, V] path, in value, entropy and gradients (float32, 1e-5)."""
import math

import pytest
import torch

from rl.core.logprobs import chunk_positions, chunked_token_logprobs
from rl.core.losses import token_logprobs


def plain(hidden, weight, targets, temperature):
    logits = hidden @ weight.T  # [M, V]
    return token_logprobs(logits.unsqueeze(0), targets.unsqueeze(0), temperature).squeeze(0)  # [M]


def test_worked_example_from_docstring():
    # V = 3, H = 3, W = identity: z = h. z = [2, 0, 0], target 0 -> lse = log(e^2 + 2), logp = 2 - lse
    hidden = torch.tensor([[2.0, 0.0, 0.0]], requires_grad=True)
    weight = torch.eye(3, requires_grad=True)
    logp, entropy = chunked_token_logprobs(hidden, weight, torch.tensor([0]), with_entropy=True)
    lse = math.log(math.exp(2) + 2)
    assert logp.item() == pytest.approx(2 - lse, abs=1e-6)  # -0.2395
    p = [math.exp(2 - lse), math.exp(-lse), math.exp(-lse)]  # [0.7870, 0.1065, 0.1065]
    assert entropy.item() == pytest.approx(-sum(q * math.log(q) for q in p), abs=1e-6)
    logp.sum().backward()
    # dL/dz = onehot - p = [0.2130, -0.1065, -0.1065]; with W = I that is dL/dh
    torch.testing.assert_close(hidden.grad, torch.tensor([[1 - p[0], -p[1], -p[2]]]), rtol=0, atol=1e-6)


@pytest.mark.parametrize("temperature", [1.0, 0.7])
@pytest.mark.parametrize("chunk_elements", [1, 7 * 50, 10 ** 9])  # 1 position per chunk, 7 per chunk, one chunk
def test_chunked_equals_plain(temperature, chunk_elements):
    torch.manual_seed(0)
    M, H, V = 23, 16, 50
    hidden = torch.randn(M, H, dtype=torch.float64).float().requires_grad_()
    weight = torch.randn(V, H).requires_grad_()
    targets = torch.randint(0, V, (M,))
    upstream = torch.randn(M)  # an arbitrary upstream gradient

    want = plain(hidden, weight, targets, temperature)
    (want * upstream).sum().backward()
    want_gh, want_gw = hidden.grad.clone(), weight.grad.clone()
    hidden.grad = weight.grad = None

    got, entropy = chunked_token_logprobs(hidden, weight, targets, temperature, chunk_elements=chunk_elements,
                                          with_entropy=True)
    (got * upstream).sum().backward()
    torch.testing.assert_close(got, want, rtol=0, atol=1e-5)
    torch.testing.assert_close(hidden.grad, want_gh, rtol=0, atol=1e-5)
    torch.testing.assert_close(weight.grad, want_gw, rtol=0, atol=1e-5)
    logp_all = torch.log_softmax((hidden @ weight.T).detach() / temperature, -1)  # [M, V]
    torch.testing.assert_close(entropy, -(logp_all.exp() * logp_all).sum(-1), rtol=0, atol=1e-5)
    assert entropy.requires_grad is False


def test_chunk_size_follows_vocabulary():
    assert chunk_positions(151_936, 2 ** 25) == 220  # Qwen2.5's vocabulary: 220 positions x 151,936 ~ 33.4M values
    assert chunk_positions(300, 2 ** 25) == 111_848  # a tiny vocabulary: everything in one chunk
    assert chunk_positions(10 ** 9, 2 ** 25) == 1


def test_inputs_are_not_modified():
    torch.manual_seed(1)
    hidden, weight, targets = torch.randn(5, 4), torch.randn(9, 4), torch.randint(0, 9, (5,))
    copies = hidden.clone(), weight.clone(), targets.clone()
    chunked_token_logprobs(hidden, weight, targets, 0.5, chunk_elements=9)
    for before, after in zip(copies, (hidden, weight, targets)):
        assert torch.equal(before, after)


def test_shape_errors_name_the_problem():
    with pytest.raises(ValueError, match="hidden"):
        chunked_token_logprobs(torch.randn(3, 4), torch.randn(5, 6), torch.zeros(3, dtype=torch.long))
    with pytest.raises(ValueError, match="targets"):
        chunked_token_logprobs(torch.randn(3, 4), torch.randn(5, 4), torch.zeros(2, dtype=torch.long))
