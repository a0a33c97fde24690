"""GRPO policy loss (pure): token logprobs, the registered policy surrogates, KL estimators and aggregation modes.

Per completion token t of sequence i (mask m_it = 1 on tokens that count):

    ratio    rho_it = exp(logp_it - logp_old_it)        (mu = 1: logp_old = logp.detach(), rho = 1, grad = PG)
    surrogate  s_it, one of (`algorithm.policy_loss`, registry SURROGATES):
      clip  : -min(rho_it * A_i, clip(rho_it, 1 - eps_low, 1 + eps_high) * A_i)            (PPO / GRPO, token level)
      gspo  : -min(r_i * A_i, clip(r_i, 1 - eps_low, 1 + eps_high) * A_i),  r_i = exp(mean_t log rho_it)
              (GSPO, Qwen 2025: one length-normalised ratio per sequence, clipped per sequence; TRL's
              importance_sampling_level="sequence", verl loss_mode=gspo. Its ratios sit near 1: GSPO's paper clips
              with eps ~ 3e-4 / 4e-4, not 0.2)
      cispo : -sg(clip(rho_it, 1 - eps_low, 1 + eps_high)) * A_i * logp_it
              (CISPO, MiniMax-M1 2025: the clip bounds the importance *weight*, never drops a token's gradient,
              so rare "fork" tokens whose ratio leaves the trust region still learn)
      decoupled : -sg(exp(prox_it - behav_it)) * clip-surrogate(rho_it), rho around the proximal (the learner's
              pre-update) logprobs, the behaviour (engine) gap as a weight masked above a cap (AReaL's decoupled PPO,
              for rollouts several versions stale)
    KL      kl_it, one of (`algorithm.kl_estimator`, registry KL_ESTIMATORS), with d = logp_it - ref_it:
      k1 : d                         (unbiased value, but as a loss term its expected gradient is 0: offered for
                                      comparison with verl's "kl"; use k2 or k3 to regularise)
      k2 : d^2 / 2                   (verl "mse"; >= 0; on-policy its gradient is exactly the reverse KL's)
      k3 : exp(-d) + d - 1           (Schulman's low-variance estimator, TRL's and verl's "low_var_kl"; >= 0)
    loss      l_it = s_it + beta * kl_it                                             (the KL only when beta > 0)

Aggregation (TRL GRPOTrainer's `loss_type` names; `Normalizer` carries the counts of the whole optimizer step so that
splitting the batch into micro-batches never changes the result):

    grpo    : (1 / N) * sum_i [ sum_t l_it m_it / sum_t m_it ]         N = sequences in this process's step
    bnpo    : sum_it l_it m_it / sum_it m_it                           tokens of this process's step
    dapo    : sum_it l_it m_it / (tokens of ALL processes' step / num_processes)   (DDP then averages processes)
    dr_grpo : sum_it l_it m_it / (N * max_completion_length)

Departure from TRL: TRL's bnpo divides by the tokens of each *micro*-batch (and then by the number of accumulation
steps), so its value depends on how the batch is split; here bnpo divides by the tokens of the accumulated batch. With
one micro-batch the two are identical.

Worked example (grpo, mu = 1, beta = 0): two sequences, A = [1, -1], masks [1, 1, 0] and [1, 0, 0]. rho = 1 so
l = -A per token: seq 1 mean = -1, seq 2 mean = 1; loss = (-1 + 1) / 2 = 0 — and yet the gradient is not zero:
d loss / d logp_1t = -1/2 * 1/2 per token of seq 1. This is why a GRPO loss printed as 0 is normal.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch

from rl.core.registry import Registry


def token_logprobs(logits: torch.Tensor, token_ids: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """log softmax(logits / temperature) at `token_ids`.

    logits [N, C, V] (any float dtype), token_ids [N, C] -> [N, C] float32. The plain reference the chunked LM head
    (rl/core/logprobs.py, what the learner uses) is tested against. Under autograd every row's float32 [C, V] copy is
    saved for backward, so with gradients it holds a whole [N, C, V] float32 copy.
    """
    out = []
    for row_logits, row_ids in zip(logits, token_ids):  # row_logits [C, V]
        scaled = row_logits.float() / temperature  # [C, V]
        picked = scaled.gather(-1, row_ids.unsqueeze(-1)).squeeze(-1)  # [C]
        out.append(picked - torch.logsumexp(scaled, dim=-1))  # [C]
    return torch.stack(out)  # [N, C]


Surrogate = Callable[..., tuple[torch.Tensor, torch.Tensor]]
# Entries: fn(logprobs [n, C], old_logprobs [n, C], advantages [n], mask [n, C], epsilon_low, epsilon_high)
# -> (per-token loss [n, C], clipped [n, C] bool), named by the recipe's `algorithm.policy_loss`.
SURROGATES: Registry = Registry("policy loss")
register_surrogate = SURROGATES.register
get_surrogate = SURROGATES.choose


@register_surrogate("clip")
def clipped_surrogate(logprobs: torch.Tensor, old_logprobs: torch.Tensor, advantages: torch.Tensor,
                      epsilon_low: float, epsilon_high: float, mask: torch.Tensor | None = None
                      ) -> tuple[torch.Tensor, torch.Tensor]:
    """PPO/GRPO clipped objective, negated. logprobs, old_logprobs [N, C]; advantages [N]; mask unused.

    Returns (per_token_loss [N, C], clipped [N, C] bool: the clip is the active branch).
    Example: A = 1, eps = 0.2, rho = 1.5 -> -min(1.5, 1.2) = -1.2 (clipped, no gradient);
             A = -1, rho = 0.5 -> -min(-0.5, -0.8) = 0.8 (clipped).
    """
    ratio = torch.exp(logprobs - old_logprobs)  # [N, C]
    adv = advantages.unsqueeze(1)  # [N, 1]
    unclipped = ratio * adv  # [N, C]
    clipped = torch.clamp(ratio, 1 - epsilon_low, 1 + epsilon_high) * adv  # [N, C]
    is_clipped = clipped < unclipped  # min picks the clipped branch
    return -torch.minimum(unclipped, clipped), is_clipped


@register_surrogate("gspo")
def gspo_surrogate(logprobs: torch.Tensor, old_logprobs: torch.Tensor, advantages: torch.Tensor,
                   epsilon_low: float, epsilon_high: float, mask: torch.Tensor | None = None
                   ) -> tuple[torch.Tensor, torch.Tensor]:
    """GSPO: the clipped objective on one sequence-level ratio r_i = exp(sum_t m_it log rho_it / sum_t m_it).

    logprobs, old_logprobs, mask [N, C]; advantages [N]. Returns (per-token loss [N, C]: each sequence's value on
    every position, so the `grpo` aggregation gives the mean over sequences of it, as TRL does; clipped [N, C]).
    Example: log rho = [0.3, 0.1] on a 2-token completion -> r = exp(0.2) = 1.2214; A = 1, eps = 0.2 ->
    -min(1.2214, 1.2) = -1.2, clipped (the whole sequence gets no gradient), where token-level clip would keep the
    second token (rho = 1.105 < 1.2).
    """
    m = torch.ones_like(logprobs) if mask is None else mask
    seq_log_ratio = ((logprobs - old_logprobs) * m).sum(-1) / m.sum(-1).clamp(min=1.0)  # [N]
    ratio = torch.exp(seq_log_ratio).unsqueeze(1)  # [N, 1]
    adv = advantages.unsqueeze(1)  # [N, 1]
    unclipped, clipped = ratio * adv, torch.clamp(ratio, 1 - epsilon_low, 1 + epsilon_high) * adv  # [N, 1]
    shape = logprobs.shape
    return -torch.minimum(unclipped, clipped).expand(shape), (clipped < unclipped).expand(shape)


@register_surrogate("cispo")
def cispo_surrogate(logprobs: torch.Tensor, old_logprobs: torch.Tensor, advantages: torch.Tensor,
                    epsilon_low: float, epsilon_high: float, mask: torch.Tensor | None = None
                    ) -> tuple[torch.Tensor, torch.Tensor]:
    """CISPO: -sg(clip(rho, 1 - eps_low, 1 + eps_high)) * A * logp, per token. Shapes as `clipped_surrogate`.

    The gradient of every token is w * A * grad logp with w the clipped weight: never zero, unlike the PPO clip.
    Example: rho = 3, eps_high = 1 (MiniMax-M1 clips the weight from above only), A = 1, logp = -0.5 ->
    w = 2, loss = -2 * 1 * (-0.5) = 1.0, d loss / d logp = -2 (the token still learns, at weight 2).
    TRL 1.16's `loss_type="cispo"` clamps rho at `epsilon_high` from above only: TRL epsilon_high = 1 + ours, with
    our eps_low large enough that 1 - eps_low is below every ratio.
    """
    ratio = torch.exp(logprobs - old_logprobs).detach()  # [N, C]
    weight = torch.clamp(ratio, 1 - epsilon_low, 1 + epsilon_high)  # [N, C], constant
    return -weight * advantages.unsqueeze(1) * logprobs, weight != ratio


@register_surrogate("decoupled")
def decoupled_surrogate(logprobs: torch.Tensor, old_logprobs: torch.Tensor, advantages: torch.Tensor,
                        epsilon_low: float, epsilon_high: float, mask: torch.Tensor | None = None, *,
                        behaviour_logprobs: torch.Tensor | None = None, behaviour_cap: float | None = None
                        ) -> tuple[torch.Tensor, torch.Tensor]:
    """Decoupled PPO (AReaL, Fu et al. 2025): the trust region is around the *proximal* policy (old_logprobs: the
    learner's own logprobs before this update), not around the stale behaviour policy that sampled the tokens
    (behaviour_logprobs: the engine's); the gap to the behaviour policy is an importance weight:

        w_t = sg(exp(prox_t - behav_t)), 0 where w_t > behaviour_cap (AReaL's behav_imp_weight_cap: masked)
        l_t = -w_t * min(r_t A, clip(r_t, 1 - eps_low, 1 + eps_high) A),   r_t = exp(logp_t - prox_t)

    logprobs, old_logprobs, behaviour_logprobs, mask [N, C]; advantages [N] -> (per-token loss [N, C], clipped
    [N, C]). Without behaviour_logprobs it is the `clip` surrogate. With mu = 1 prox = logp (detached), r = 1: the
    policy gradient weighted by w, whatever the staleness. Example: A = 1, eps 0.2, logp - prox = 0.5 (r = 1.6487,
    clipped to 1.2), prox - behav = ln 2 (w = 2) -> l = -2 * 1.2 = -2.4; with behaviour_cap 1.5 -> w = 0, l = 0.
    """
    per_token, is_clipped = clipped_surrogate(logprobs, old_logprobs, advantages, epsilon_low, epsilon_high, mask)
    if behaviour_logprobs is None:
        return per_token, is_clipped
    weight = torch.exp(old_logprobs.detach().float() - behaviour_logprobs.detach().float())  # [N, C], constant
    if behaviour_cap is not None:
        weight = weight.masked_fill(weight > behaviour_cap, 0.0)
    return per_token * weight.to(per_token.dtype), is_clipped


KLEstimator = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
# Entries: fn(logprobs [n, C], ref_logprobs [n, C]) -> per-token KL estimate [n, C] (`algorithm.kl_estimator`).
KL_ESTIMATORS: Registry = Registry("KL estimator")
register_kl_estimator = KL_ESTIMATORS.register
get_kl_estimator = KL_ESTIMATORS.choose


@register_kl_estimator("k1")
def k1_kl(logprobs: torch.Tensor, ref_logprobs: torch.Tensor) -> torch.Tensor:
    """k1 = logp - ref per token, [N, C] -> [N, C]. Example: logp = -1, ref = -2 -> 1.0; logp = -2, ref = -1 -> -1."""
    return logprobs - ref_logprobs


@register_kl_estimator("k2")
def k2_kl(logprobs: torch.Tensor, ref_logprobs: torch.Tensor) -> torch.Tensor:
    """k2 = (logp - ref)^2 / 2 per token, [N, C] -> [N, C]. Example: logp = -1, ref = -2 -> 0.5."""
    return 0.5 * (logprobs - ref_logprobs) ** 2


@register_kl_estimator("k3")
def k3_kl(logprobs: torch.Tensor, ref_logprobs: torch.Tensor) -> torch.Tensor:
    """Schulman's k3 estimator of KL(pi || ref) per token, [N, C] -> [N, C], always >= 0.

    Example: logp = -1, ref = -2: exp(-1) - (-1) - 1 = 0.3679.
    """
    delta = ref_logprobs - logprobs
    return torch.exp(delta) - delta - 1


def kl_reward_penalty(sampling_logprobs: torch.Tensor, ref_logprobs: torch.Tensor, mask: torch.Tensor, beta: float,
                      kl_estimator: KLEstimator = k1_kl) -> tuple[torch.Tensor, dict[str, float]]:
    """The KL to the reference as a penalty on each completion's reward (PPO's and verl's `use_kl_in_reward`),
    instead of a term in the loss: r_i <- r_i - beta * sum_t kl_it m_it, before the group advantages.

    sampling_logprobs, ref_logprobs, mask [N, C] (the policy's logprobs of the sampled tokens: the engine's, so no
    extra forward of the policy) -> (penalty [N] to subtract, metrics). Example, k1, beta 0.1: logp [-1, -2], ref
    [-2, -2], mask [1, 1] -> kl [1, 0] -> penalty 0.1; metrics kl = 0.5 (per counted token), reward/kl_penalty 0.1.
    """
    kl = kl_estimator(sampling_logprobs.float(), ref_logprobs.float()) * mask  # [N, C]
    penalty = beta * kl.sum(-1)  # [N]
    tokens = float(mask.sum())
    return penalty, {"kl": float(kl.sum()) / max(tokens, 1.0), "reward/kl_penalty": float(penalty.mean())}


@dataclass(frozen=True)
class Normalizer:
    """Counts over the whole optimizer step (all micro-batches), fixed before the first backward pass."""

    num_sequences: int  # sequences in this process's step
    num_tokens: float  # counted completion tokens in this process's step
    global_num_tokens: float  # counted completion tokens over all processes' step
    num_processes: int = 1
    max_completion_length: int = 1


Aggregation = Callable[[torch.Tensor, torch.Tensor, Normalizer], torch.Tensor]
AGGREGATIONS: Registry = Registry("loss aggregation")
register_aggregation = AGGREGATIONS.register
get_aggregation = AGGREGATIONS.choose


@register_aggregation("grpo")
def _grpo(loss: torch.Tensor, mask: torch.Tensor, norm: Normalizer) -> torch.Tensor:
    per_seq = (loss * mask).sum(-1) / mask.sum(-1).clamp(min=1.0)  # [n]
    return per_seq.sum() / norm.num_sequences


@register_aggregation("bnpo")
def _bnpo(loss: torch.Tensor, mask: torch.Tensor, norm: Normalizer) -> torch.Tensor:
    return (loss * mask).sum() / max(norm.num_tokens, 1.0)


@register_aggregation("dapo")
def _dapo(loss: torch.Tensor, mask: torch.Tensor, norm: Normalizer) -> torch.Tensor:
    return (loss * mask).sum() / max(norm.global_num_tokens / norm.num_processes, 1.0)


@register_aggregation("dr_grpo")
def _dr_grpo(loss: torch.Tensor, mask: torch.Tensor, norm: Normalizer) -> torch.Tensor:
    return (loss * mask).sum() / (norm.num_sequences * norm.max_completion_length)


def policy_loss(logprobs: torch.Tensor, advantages: torch.Tensor, mask: torch.Tensor, norm: Normalizer, *,
                aggregation: Aggregation, epsilon_low: float, epsilon_high: float, beta: float = 0.0,
                old_logprobs: torch.Tensor | None = None, ref_logprobs: torch.Tensor | None = None,
                is_weights: torch.Tensor | None = None, surrogate: Surrogate = clipped_surrogate,
                kl_estimator: KLEstimator = k3_kl, surrogate_kwargs: dict | None = None
                ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """The micro-batch's share of the step loss, and detached sums for metrics.

    logprobs [n, C] (with grad), advantages [n], mask [n, C] float, old/ref logprobs [n, C] or None,
    is_weights [n, C] optional truncated importance-sampling weights (engine/learner mismatch correction).
    `surrogate` and `kl_estimator` come from the registries above, chosen once from the recipe (the learner);
    `surrogate_kwargs` go to the surrogate as keywords (`decoupled`: behaviour_logprobs, behaviour_cap).
    Metric values are *sums* over counted tokens (divide by the step's token count to report means).
    """
    old = logprobs.detach() if old_logprobs is None else old_logprobs
    per_token, is_clipped = surrogate(logprobs, old, advantages, epsilon_low, epsilon_high, mask,
                                      **(surrogate_kwargs or {}))  # [n, C]
    if is_weights is not None:
        per_token = per_token * is_weights
    sums = {"clipped_tokens": (is_clipped.float() * mask).sum().detach()}
    if beta != 0.0:
        if ref_logprobs is None:
            raise ValueError("beta > 0 needs reference logprobs")
        kl = kl_estimator(logprobs, ref_logprobs)  # [n, C]
        per_token = per_token + beta * kl
        sums["kl_tokens"] = (kl * mask).sum().detach()
    return aggregation(per_token, mask, norm), sums
