"""A few lines that say what a GRPO recipe will do, printed at start-up instead of the whole resolved config (which is
written to the run directory as config.yaml).

    >>> from rl.config.grpo import GRPOConfig
    >>> from rl.config.recipe import load_config
    >>> print(grpo_summary(load_config(GRPOConfig, "recipes/tiny/r1_zero.yaml", []), world=1))
    model tiny (weights float32, compute float32); data procedural:arithmetic (template r1_zero)
    40 steps x 8 prompts x G=8 per process, completions <= 40 tokens, engine hf; lr 0.0002 (constant)
    loss dapo (clip, advantage group, beta 0.0); rewards accuracy 1.0, format 0.5
"""
from __future__ import annotations


def _weight(spec) -> str:
    """A reward's weight as the recipe gave it: `1.0`, or `{weight: 0.5, ...}` -> 0.5."""
    return str(spec.get("weight", 1.0) if isinstance(spec, dict) else spec)


def grpo_summary(cfg, world: int) -> str:
    """Three lines: the model and data, the step's shape and the optimizer, the objective and the rewards."""
    m, d, r, a, t = cfg.model, cfg.data, cfg.rollout, cfg.algorithm, cfg.train
    lora = f", LoRA r {m.lora.r}" if m.lora.enabled else ""
    weights = m.dtype if m.lora.enabled else "float32"  # LoRA: the frozen base in the compute dtype
    lines = [
        f"model {m.name_or_path} (weights {weights}, compute {m.dtype}{lora}); data {d.train} (template {d.template})",
        f"{t.max_steps} steps x {cfg.prompts_per_step} prompts x G={r.group_size} per process"
        f"{f' ({world} processes)' if world > 1 else ''}, completions <= {r.max_completion_length} tokens, "
        f"engine {r.engine}{f', {r.async_steps} step(s) ahead' if r.async_steps else ''}"
        f"{f', max staleness {r.max_staleness}' if r.max_staleness is not None else ''}; "
        f"lr {t.learning_rate} ({t.lr_scheduler})",
        f"loss {a.loss} ({a.policy_loss}, advantage {a.advantage}, beta {a.beta}"
        f"{f', rollout correction {a.rollout_correction}' if a.rollout_correction else ''}); rewards "
        + ", ".join(f"{name} {_weight(spec)}" for name, spec in cfg.rewards.items())
        + ("" if cfg.reward_sets is None else  # per-row rewards: which task gets which
           "; per task: " + "; ".join(f"{task} {' + '.join(names)}" for task, names in cfg.reward_sets.items())),
    ]
    return "\n".join(lines)
