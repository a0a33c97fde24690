"""Per-token logprobs through the LM head in chunks of positions, never the [N, vocab] logits at once (pure torch).

The plain path computes `logits = hidden @ W.T` for every position ([N, V], and a float32 copy for the log-softmax)
and autograd keeps them for backward: for Qwen2.5-1.5B (V = 151,936) at 8 x 8,192 completion tokens that is 40 GB
in float32. Here, for chunks of k positions at a time,

    forward :  z = (h_k @ W.T).float() / T           [k, V]   (bf16 matmul under autocast, like the plain path)
               lse_k = logsumexp(z)                  [k]
               logp_k = z[target] - lse_k            [k]      (+ entropy_k = -sum p log p over the chunk, no grad)
    backward:  recompute z for the chunk, then  dlogp/dz = onehot(target) - softmax(z)
               dL/dz   = g * (onehot - p) / T        [k, V]   (in place over the recomputed chunk)
               dL/dh_k = dL/dz @ W                   [k, H]
               dL/dW  += dL/dz.T @ h_k               [V, H]   (float32 accumulation)

so the only vocabulary-sized tensors alive are one chunk's [k, V] (two at most while computing the entropy), and
only `hidden`, `lse` and the targets are saved for backward. The chunk is chosen so that k * V is about
`chunk_elements` (2**25 = 32M elements, 128 MB in float32 by default); a small vocabulary gets one chunk.

Worked example (V = 3, T = 1): z = [2, 0, 0], target 0 -> lse = log(e^2 + 2) = 2.2395, logp = -0.2395;
p = [0.7870, 0.1065, 0.1065], so with g = 1: dL/dz = [0.2130, -0.1065, -0.1065].

Identical (to float32 rounding) to `losses.token_logprobs(hidden @ W.T, targets, T)` in value and gradient:
tests/core/test_logprobs.py checks both to 1e-5.

A weight that is sharded outside its module's forward (DeepSpeed ZeRO-3) must be whole during the call (the caller
gathers it: autograd records the weight's shape at this point) and again in backward: `gather` is a context-manager
factory that backward enters once around its whole chunk loop (see rl/train/policy.py). The default does nothing.
"""
from __future__ import annotations

import contextlib
from typing import Callable, ContextManager

import torch

DEFAULT_CHUNK_ELEMENTS = 2 ** 25


def chunk_positions(vocab_size: int, chunk_elements: int = DEFAULT_CHUNK_ELEMENTS) -> int:
    """Positions per chunk so that one chunk's logits hold about `chunk_elements` values (at least 1 position)."""
    return max(1, chunk_elements // max(vocab_size, 1))


def _no_gather(weight: torch.Tensor) -> ContextManager:
    return contextlib.nullcontext()


def _compute_dtype(t: torch.Tensor) -> torch.dtype:
    return torch.get_autocast_dtype(t.device.type) if torch.is_autocast_enabled(t.device.type) else t.dtype


def _add_matmul_fp32(acc: torch.Tensor, a: torch.Tensor, b: torch.Tensor) -> None:
    """acc += a @ b with acc float32, without rounding the product to a/b's dtype first."""
    if acc.device.type == "cuda" and a.dtype in (torch.bfloat16, torch.float16):
        torch.addmm(acc, a, b, out_dtype=torch.float32, out=acc)
    else:
        acc.addmm_(a.float(), b.float())


class _ChunkedLogprobs(torch.autograd.Function):
    @staticmethod
    def forward(ctx, hidden, weight, targets, temperature, chunk, with_entropy, gather):
        # hidden [M, H], weight [V, H], targets [M] long
        dtype = _compute_dtype(hidden)
        M = hidden.shape[0]
        logprobs = torch.empty(M, dtype=torch.float32, device=hidden.device)  # [M]
        lse = torch.empty_like(logprobs)  # [M]
        entropy = torch.empty_like(logprobs) if with_entropy else None  # [M]
        with torch.autocast(hidden.device.type, enabled=False):
            w = weight.to(dtype)  # [V, H] (a no-op when already in the compute dtype)
            for s in range(0, M, chunk):
                h = hidden[s:s + chunk].to(dtype)  # [k, H]
                z = (h @ w.T).float()  # [k, V]
                if temperature != 1.0:
                    z.div_(temperature)
                lse[s:s + chunk] = torch.logsumexp(z, dim=-1)  # [k]
                logprobs[s:s + chunk] = z.gather(-1, targets[s:s + chunk, None]).squeeze(-1) - lse[s:s + chunk]
                if with_entropy:  # H = -sum_v p_v log p_v (not lse - sum p z: that cancels badly)
                    logp = z.sub_(lse[s:s + chunk, None])  # [k, V], in place: z is not needed any more
                    entropy[s:s + chunk] = -(logp.exp() * logp).sum(-1)
                del z
        ctx.save_for_backward(hidden, weight, targets, lse)
        ctx.temperature, ctx.chunk, ctx.dtype, ctx.gather = temperature, chunk, dtype, gather
        if entropy is not None:
            ctx.mark_non_differentiable(entropy)
        return logprobs, entropy

    @staticmethod
    def backward(ctx, grad_logprobs, grad_entropy):
        hidden, weight, targets, lse = ctx.saved_tensors
        T, chunk, dtype = ctx.temperature, ctx.chunk, ctx.dtype
        need_h, need_w = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
        if grad_logprobs is None or not (need_h or need_w):
            return None, None, None, None, None, None, None
        g_all = grad_logprobs.float()  # [M]
        grad_hidden = torch.empty(hidden.shape, dtype=hidden.dtype, device=hidden.device) if need_h else None
        with ctx.gather(weight), torch.autocast(hidden.device.type, enabled=False):
            w = weight.to(dtype)  # [V, H]
            grad_weight = torch.zeros(weight.shape, dtype=torch.float32, device=weight.device) if need_w else None
            for s in range(0, hidden.shape[0], chunk):
                h = hidden[s:s + chunk].to(dtype)  # [k, H]
                g = g_all[s:s + chunk]  # [k]
                dz = (h @ w.T).float()  # [k, V], recomputed z * T
                if T != 1.0:
                    dz.div_(T)
                dz.sub_(lse[s:s + chunk, None]).exp_()  # softmax p
                dz.mul_(-g[:, None])  # -g * p
                dz.scatter_add_(-1, targets[s:s + chunk, None], g[:, None])  # + g at the target
                if T != 1.0:
                    dz.div_(T)  # dL/dlogits
                if need_h:
                    grad_hidden[s:s + chunk] = (dz.to(dtype) @ w).to(hidden.dtype)  # [k, H]
                if need_w:
                    _add_matmul_fp32(grad_weight, dz.to(dtype).T, h)  # [V, H]
                del dz
        return grad_hidden, (grad_weight.to(weight.dtype) if need_w else None), None, None, None, None, None


def chunked_token_logprobs(hidden: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor,
                           temperature: float = 1.0, *, chunk_elements: int = DEFAULT_CHUNK_ELEMENTS,
                           with_entropy: bool = False,
                           gather: Callable[[torch.Tensor], ContextManager] = _no_gather,
                           ) -> tuple[torch.Tensor, torch.Tensor | None]:
    """log softmax(hidden @ weight.T / temperature) at `targets`, chunk by chunk of positions.

    hidden [M, H] (rows = positions, any float dtype; autocast decides the matmul dtype), weight [V, H] (the LM head,
    no bias), targets [M] long. Returns (logprobs [M] float32 with gradient to hidden and weight,
    entropy [M] float32 without gradient, or None unless `with_entropy`).
    """
    if hidden.ndim != 2 or weight.ndim != 2 or hidden.shape[1] != weight.shape[1]:
        raise ValueError(f"hidden [M, H] and weight [V, H] expected, got {tuple(hidden.shape)} and "
                         f"{tuple(weight.shape)}")
    if targets.shape != hidden.shape[:1]:
        raise ValueError(f"targets {tuple(targets.shape)} do not match hidden {tuple(hidden.shape)}")
    chunk = chunk_positions(weight.shape[0], chunk_elements)
    return _ChunkedLogprobs.apply(hidden, weight, targets, float(temperature), chunk, with_entropy, gather)
