"""R1-Zero GRPO, top to bottom.

    accelerate launch rl/grpo.py recipes/tiny/r1_zero.yaml train.learning_rate=3e-4 output_dir=runs/x

Each step: sample prompts -> roll out G completions per prompt -> score with the recipe's weighted rewards ->
group-relative advantages -> micro-batched clipped-surrogate loss with gradient accumulation -> optimizer and LR step ->
push weights to the rollout engine -> log -> evaluate / checkpoint every N steps.

How this departs from textbook GRPO (DeepSeekMath), all chosen in the recipe:
  - mu = 1 by default (one optimizer pass per generation batch, as in DeepSeek-R1 and TRL): the ratio is then 1 and
    the clip never binds; the loss value is ~0 while its gradient is the policy gradient. num_iterations > 1 restores
    PPO-style reuse with old logprobs computed once.
  - beta = 0 by default (no KL term, no reference model: DAPO, Dr. GRPO, Open-Reasoner-Zero found it unneeded).
  - Loss aggregation is a choice (grpo | bnpo | dapo | dr_grpo); the textbook per-sequence mean is `grpo`.
  - Advantages may skip the std division (`none`, Dr. GRPO) or use the batch std (`batch`).
  - Optional DAPO pieces: clip-higher (epsilon_high), dynamic sampling, truncated-completion masking, soft overlong
    reward (rewards package).

Reading order: `main` at the bottom is the whole run in twenty lines; above it `load_recipe_and_data` (checked before
anything heavy), `set_up` (processes, models, engine, resume -> a `Run`), `train_step` and `log_step` (one step).
"""
from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

if TYPE_CHECKING:
    from rl.grpo_run import Run


# ---------------------------------------------------------------------------------------------------------------------
# 1-2. The recipe and the data, checked before anything heavy.

def load_recipe_and_data(argv: list[str]) -> tuple[Any, list[dict], list[dict]]:
    """The recipe, fully checked (keys, types, registries, rewards), and its canonical {prompt, answer} rows; a
    missing column or a model path that does not exist fails here, before any model is loaded or any file written.
    Returns (cfg, train rows, test rows)."""
    from data.loading import load_examples, load_examples_and_gold
    from rl.config.grpo import GRPOConfig
    from rl.config.recipe import load_config, split_argv
    from rl.tiny.sources import check_model_source

    cfg = load_config(GRPOConfig, *split_argv(argv))
    d = cfg.data
    data_kw = dict(prompt_column=d.prompt_column, answer_column=d.answer_column, num_train=d.num_train,
                   num_test=d.num_test, seed=d.seed, keep_columns=d.columns)
    train_rows, gold = load_examples_and_gold(d.train, d.train_split, **data_kw)
    test_rows = load_examples(d.test, d.test_split, limit=d.max_eval_samples, **data_kw) if d.test else []
    from rl.config.reward_checks import check_reward_columns, check_reward_rows, reward_specs_by_row
    check_reward_rows(cfg.reward_sets, train_rows, "training data")  # each row's task has a reward set
    for spec, row in reward_specs_by_row(cfg.rewards, cfg.reward_sets, train_rows):
        check_reward_columns(spec, row)
    check_model_source(cfg.model.name_or_path)
    d.answer_column = gold  # config.yaml records the column read (`solution` when the data had no `answer`)
    return cfg, train_rows, test_rows


# ---------------------------------------------------------------------------------------------------------------------
# 3-5. Set-up: processes, run directory, rewards, models, engine, resume. Everything a run holds is one `Run`.

# Everything a run holds is one `Run` (rl/grpo_run.py: its state between steps and the collective actions on it).

def set_up(cfg, train_rows: list[dict], test_rows: list[dict]) -> Run:
    """Processes and seeds, the run directory (config.yaml), rewards, the policy (+ reference only when beta > 0),
    learner and rollout engine, then resume from the latest checkpoint when `resume` says so."""
    from accelerate.utils import set_seed

    from rewards import RewardScorer
    from rewards.scoring.registry import eval_rewards as make_eval_rewards
    from rl.config.recipe import dump_yaml
    from rl.core.advantages import get_advantage_fn
    from rl.rollout import make_engine
    from rl.rollout.episodes.collect import PromptEncoder, PromptSampler, drop_overlong_prompts
    from rl.train.checkpoint import load_training_state
    from rl.train.distributed import (DecodeSync, check_supported, make_accelerator, process_group_timeout_s,
                                      shards_parameters, strategy)
    from rl.train.learner import Learner
    from rl.train.models import check_context_length, load_policy_and_reference, load_tokenizer
    from rl.tiny.sources import resolve_model_path
    from rl.train.tracking import RunLogger

    # 3. Processes, seeds, run directory, rewards.
    accelerator = make_accelerator(cfg)
    check_supported(accelerator)
    rank, world = accelerator.process_index, accelerator.num_processes
    set_seed(cfg.train.seed + rank)
    out = Path(cfg.output_dir)
    if accelerator.is_main_process:
        out.mkdir(parents=True, exist_ok=True)
        (out / "config.yaml").write_text(dump_yaml(cfg))
        timeout = process_group_timeout_s()  # read back from the process group (train.dist_timeout_s)
        from rl.config.summary import grpo_summary
        print(f"[grpo] resolved config ({world} process{'es' if world > 1 else ''}, {strategy(accelerator)}, "
              f"mixed precision {accelerator.mixed_precision}"
              f"{f', process-group timeout {timeout:.0f} s' if timeout is not None else ''}); the whole config: "
              f"{out / 'config.yaml'}\n{grpo_summary(cfg, world)}", flush=True)
        from data.loading import evaluation_set_line, training_set_line
        d = cfg.data
        drawn = cfg.train.max_steps * cfg.prompts_per_step * world  # prompts the run will draw
        print("[grpo] " + training_set_line(d.train, d.train_split, len(train_rows), d.prompt_column, d.answer_column,
                                            d.num_train, drawn), flush=True)
        print(f"[grpo] {evaluation_set_line(d.train, d.test, d.test_split, len(test_rows))}"
              f"{f', every {cfg.logging.eval_every} steps and at the end' if d.test and cfg.logging.eval_every else ''}",
              flush=True)
    sc = cfg.scoring
    from rl.config.reward_checks import with_model_paths
    import rl.rollout.judge_engine  # noqa: F401  (registers the judge reward's local engines: hf, vllm)
    with accelerator.main_process_first():  # a tiny reward model (`model: tiny-rm`) is built once, by rank 0
        reward_spec = with_model_paths(cfg.rewards, resolve_model_path)
    scorer = RewardScorer(reward_spec, num_workers=sc.workers, timeout_s=sc.timeout_s,
                          max_error_frac=sc.max_error_frac, error_window=sc.error_window,
                          reward_sets=cfg.reward_sets)
    scorer.warmup()  # a reward model loads here, beside the policy, once (a bad path fails before the policy loads)
    eval_rewards = make_eval_rewards(cfg.eval_rewards)  # eval/accuracy, eval/format (recipe: eval_rewards)

    # 4. Models: policy (+ reference only when beta > 0), learner, rollout engine.
    with accelerator.main_process_first():  # a tiny model is built once, by rank 0, then read by the others
        model_path = resolve_model_path(cfg.model.name_or_path)
    r = cfg.rollout
    check_context_length(model_path, r.max_prompt_length, r.max_completion_length)  # config only, before any weights
    tokenizer = load_tokenizer(model_path)
    encoder = PromptEncoder(tokenizer, cfg.data.template, cfg.data.system_prompt, r.max_prompt_length)
    if cfg.data.filter_overlong_prompts:  # before any weights load: the prompts the sampler draws from
        train_rows, dropped = drop_overlong_prompts(train_rows, encoder.length, r.max_prompt_length)
        if not train_rows:
            from rl.config.recipe import ConfigError
            raise ConfigError(f"data.filter_overlong_prompts dropped all {dropped} training prompts: every one is "
                              f"longer than rollout.max_prompt_length={r.max_prompt_length} tokens")
        if accelerator.is_main_process:
            print(f"[grpo] data.filter_overlong_prompts: dropped {dropped} of {dropped + len(train_rows)} training "
                  f"prompts longer than rollout.max_prompt_length={r.max_prompt_length} tokens", flush=True)
    # float32 master weights (model.dtype is the compute dtype); the reference (beta > 0) loaded and run as the policy
    model, ref_model = load_policy_and_reference(model_path, cfg.model, cfg.algorithm.beta)
    learner = Learner(cfg, accelerator, model, ref_model)
    if learner.lora is not None and accelerator.is_main_process:
        from rl.train.lora import start_up_notice
        sizes = [(getattr(p, "ds_numel", p.numel()), p.requires_grad) for p in learner.unwrapped_model.parameters()]
        trainable, total = sum(n for n, grad in sizes if grad), sum(n for n, _ in sizes)  # ZeRO-3: full sizes
        print(f"[grpo] {start_up_notice(cfg.model.lora, cfg.train.learning_rate, trainable, total)}", flush=True)
    max_model_len = r.max_prompt_length + r.max_completion_length
    if r.async_steps > 0:  # the engine in a worker process of its own, generating ahead (rl/rollout/episodes/async_rollouts.py)
        import os

        from rl.config.off_policy import off_policy_correction
        from rl.rollout.engines.worker import start_rollout_worker
        from rl.rollout.episodes.async_episodes import EpisodeWorker, worker_episodes
        episodes = worker_episodes(cfg)  # multi-turn: the worker runs whole episodes (tools, sandboxes of its own)
        engine = start_rollout_worker(cfg, model_path, seed=cfg.train.seed + rank, max_model_len=max_model_len,
                                      rank=rank, local_rank=accelerator.local_process_index,
                                      local_world=int(os.environ.get("LOCAL_WORLD_SIZE", world)), world=world,
                                      episodes=episodes)
        if episodes is not None:
            engine = EpisodeWorker(engine)
        lockstep = False
        print(f"[grpo] rank {rank}: rollout worker pid {engine.pid} on {engine.placement.device} ({r.engine} engine, "
              f"{engine.spec.dtype}, {r.async_steps} step(s) ahead{', streamed' if r.stream else ''}, "
              f"max staleness {r.max_staleness}, "
              f"{off_policy_correction(cfg.algorithm)})", flush=True)
    else:
        # sharded parameters + transformers engine: every forward is collective, so all ranks decode in lock step
        lockstep = r.engine == "hf" and shards_parameters(accelerator)
        engine = make_engine(r, learner.unwrapped_model, tokenizer, model_path, seed=cfg.train.seed + rank,
                             max_model_len=max_model_len, dtype=cfg.model.dtype, autocast=accelerator.autocast,
                             sync=DecodeSync(accelerator) if lockstep else None)
        from rl.rollout.episodes.tool_rollout import episode_engine
        engine = episode_engine(cfg, engine, tokenizer)  # multi-turn episodes when the recipe lists tools

    # 5. Resume (auto: latest complete checkpoint in output_dir); on resume the logs are cut back to the
    # checkpoint's step (a killed run logged steps that are redone now).
    accelerator.wait_for_everyone()  # rank 0 has claimed (and with overwrite cleared) output_dir before this
    resume_from = resume_point(cfg)
    start_step = 0
    if resume_from is not None:
        state = load_training_state(accelerator, resume_from, learner.scheduler)
        start_step = state["step"]
    logger = RunLogger(out, cfg.logging.report_to, config=None, enabled=accelerator.is_main_process,
                       resume_step=start_step if resume_from is not None else None)
    from rl.grpo_run import Run
    run = Run(cfg=cfg, accelerator=accelerator, out=out, tokenizer=tokenizer, learner=learner, engine=engine,
              encoder=encoder, sampler=None, scorer=scorer, logger=logger, test_rows=test_rows,
              eval_rewards=eval_rewards, lockstep=lockstep, start_step=start_step, resumed_from=resume_from,
              advantage_fn=get_advantage_fn(cfg.algorithm.advantage))
    run.sampler = PromptSampler(train_rows, seed=cfg.train.seed, rank=rank, world_size=world,
                                gather_counts=run.gather_counts if world > 1 else None)
    if resume_from is not None:
        run.sampler.position = state["sampler_position"]
    if r.async_steps > 0:
        from rl.rollout.episodes.async_rollouts import AsyncRollouts
        if r.stream:  # groups as they complete, in-flight weight updates (rl/rollout/episodes/stream_rollouts.py)
            from rl.rollout.episodes.stream_rollouts import StreamedRollouts as AsyncRollouts
        run.rollouts = AsyncRollouts(engine, scorer, run.sampler, encoder, run.sampling_params, cfg.prompts_per_step,
                                     r.async_steps, version=start_step, max_staleness=r.max_staleness)
    if resume_from is not None:
        run.push_weights(start_step)
        if accelerator.is_main_process:
            print(f"[grpo] resumed from {resume_from} at step {start_step}"
                  f"{f'; removed {logger.rewound_rows} log rows of later steps' if logger.rewound_rows else ''}",
                  flush=True)
    return run


# ---------------------------------------------------------------------------------------------------------------------
# 6. One step: rollouts -> rewards -> advantages -> learner update -> weights to the engine -> metrics.

def train_step(run: Run, step: int) -> tuple[dict[str, float], list]:
    """One GRPO step on every rank. Returns (metrics averaged over ranks, this rank's episodes)."""
    from rl.core.collate import collate
    from rl.rollout.episodes.evaluation import chain_metrics
    from rl.rollout.episodes.collect import collect_episodes, step_advantages

    cfg, r, accelerator = run.cfg, run.cfg.rollout, run.accelerator
    t_step = time.time()
    if run.rollouts is not None:  # generated ahead by the worker, at most async_steps updates stale
        episodes, metrics = run.rollouts.episodes_for(step)
    else:
        episodes, metrics = collect_episodes(run.engine, run.scorer, run.sampler, run.encoder,
                                             run.sampling_params(step), cfg.prompts_per_step,
                                             cfg.algorithm.dynamic_sampling, cfg.algorithm.max_sampling_rounds)
        run.engine.release_memory(weights_follow=True)  # vLLM sleep mode: the GPU is the learner's until the push
    rewards = torch.tensor([e.reward_total for e in episodes])  # [N], the task's rewards (logged)
    ref_logprobs = None
    if cfg.algorithm.kl_in_reward:  # PPO-style: the KL to the reference is a penalty on each completion's reward
        from rl.core.losses import kl_reward_penalty
        draft = collate(episodes, run.tokenizer.pad_token_id, cfg.algorithm.mask_truncated_completions)
        ref_logprobs = run.learner.reference_logprobs(draft).cpu()  # [N, C], reused by the update (one forward)
        penalty, kl_metrics = kl_reward_penalty(draft.sampling_logprobs, ref_logprobs, draft.completion_mask,
                                                cfg.algorithm.beta, run.learner.kl_estimator)  # [N]
        for ep, p in zip(episodes, penalty.tolist()):
            ep.reward_total -= p
        metrics.update(kl_metrics)
    # advantages over the global batch (all ranks' rewards), each rank keeping its own slice
    advantages, adv_metrics = step_advantages(episodes, run.advantage_fn, r.group_size,
                                              run.gather_rewards if run.world > 1 else None, run.rank)  # [N]
    for ep, a in zip(episodes, advantages.tolist()):
        ep.advantage = a
    batch = collate(episodes, run.tokenizer.pad_token_id, cfg.algorithm.mask_truncated_completions)
    batch.ref_logprobs = ref_logprobs
    metrics.update(adv_metrics)
    metrics.update(run.learner.step(batch))
    run.push_weights(step)
    lengths = [len(e.completion.completion_ids) for e in episodes]
    metrics.update({"reward/mean": rewards.mean().item(), "completion_len/mean": sum(lengths) / len(lengths),
                    "truncated_frac": sum(e.truncated for e in episodes) / len(episodes),
                    **chain_metrics([e.completion.text for e in episodes]),  # "wait, ...", mixed languages
                    "time/step_s": time.time() - t_step})
    if run.rollouts is not None:  # how much of generation and training overlapped; the learner's waits
        metrics["rollout/overlap"] = metrics["time/step_s"] / max(metrics["time/generate_s"] +
                                                                 metrics["time/train_s"], 1e-9)
        metrics["time/learner_idle_s"] = metrics["time/rollout_wait_s"] + run.rollouts.push_wait_s
    if run.world > 1:  # one value per metric for the run (mean over the ranks that logged it, max for `*_max`)
        from rl.train.rank_metrics import metrics_over_ranks
        metrics = metrics_over_ranks(metrics, accelerator.device)
    return metrics, episodes


def log_step(run: Run, step: int, metrics: dict, episodes: list, progress) -> None:
    """metrics.jsonl, sample completions (reward hacking shows here first), the truncation warning, the bar."""
    cfg = run.cfg
    run.logger.log(metrics, step)
    run.logger.log_completions([{"completion": e.completion.text, "answer": e.example["answer"],
                                 "reward": e.reward_total, "advantage": e.advantage, "rewards": e.rewards}
                                for e in episodes[:cfg.logging.log_completions]], step)
    if metrics["truncated_frac"] > cfg.logging.truncation_warning and run.accelerator.is_main_process:
        print(f"[grpo] warning: {metrics['truncated_frac']:.0%} of completions hit rollout.max_completion_length="
              f"{cfg.rollout.max_completion_length}; raise it or they are all cut off", flush=True)
    if metrics.get("rollout/prompts_truncated", 0) > 0 and not run.warned_prompts_truncated:
        run.warned_prompts_truncated = True  # the sum over ranks: the same on every rank
        if run.accelerator.is_main_process:
            print(f"[grpo] warning: {metrics['rollout/prompts_truncated']:.0f} prompt(s) of step {step} are longer "
                  f"than rollout.max_prompt_length={cfg.rollout.max_prompt_length} tokens and were cut from the left "
                  f"(the template's start is lost); raise it or set data.filter_overlong_prompts=true. Counted each "
                  f"step as rollout/prompts_truncated; this warning is not repeated", flush=True)
    if progress is not None:
        progress.update(1)
        progress.set_postfix(reward=f"{metrics['reward/mean']:.3f}", len=f"{metrics['completion_len/mean']:.0f}")


# ---------------------------------------------------------------------------------------------------------------------
# The run, top to bottom.

def resume_point(cfg) -> Path | None:
    """The checkpoint this run continues from: none for `resume: never` or `overwrite: true`, the latest complete
    one in output_dir for `auto` (none if there is none: a new run), else the given path."""
    from rl.train.checkpoint import latest_checkpoint
    if cfg.overwrite or cfg.resume == "never":
        return None
    return latest_checkpoint(cfg.output_dir) if cfg.resume == "auto" else Path(cfg.resume)


def main(argv: list[str] | None = None) -> dict:
    from rl.train.rundir import claim_output_dir

    cfg, train_rows, test_rows = load_recipe_and_data(sys.argv[1:] if argv is None else argv)  # 1-2
    # rank 0 locks output_dir; a new run into another run's directory stops here (rl/train/rundir.py)
    with claim_output_dir(cfg.output_dir, "grpo", resuming=resume_point(cfg) is not None, overwrite=cfg.overwrite):
        return train(cfg, train_rows, test_rows)


def train(cfg, train_rows: list[dict], test_rows: list[dict]) -> dict:
    """Set-up, the steps with their evaluations and checkpoints, the final report (3-7)."""
    run = set_up(cfg, train_rows, test_rows)  # 3-5
    first_eval: dict = {}
    last_eval: dict = {}
    every = cfg.logging
    try:
        first_eval = run.evaluate(run.start_step) if run.start_step == 0 else {}
        last_eval = first_eval
        progress = None
        if every.progress_bar and run.accelerator.is_main_process:
            from tqdm.auto import tqdm
            progress = tqdm(total=cfg.train.max_steps, initial=run.start_step, desc="grpo", dynamic_ncols=True)
        for step in range(run.start_step + 1, cfg.train.max_steps + 1):  # 6
            metrics, episodes = train_step(run, step)
            log_step(run, step, metrics, episodes, progress)
            if every.eval_every and step % every.eval_every == 0 and step != cfg.train.max_steps:
                last_eval = run.evaluate(step)
            if every.save_every and step % every.save_every == 0 and step != cfg.train.max_steps:
                run.checkpoint(step)
        if progress is not None:
            progress.close()
        if run.start_step < cfg.train.max_steps:  # 7. final evaluation and checkpoint
            last_eval = run.evaluate(cfg.train.max_steps)
            run.checkpoint(cfg.train.max_steps)
    finally:  # a failure anywhere (a dead rollout worker, a learner error) still stops the worker and the pool
        run.close()
    if run.accelerator.is_main_process and run.test_rows and not (first_eval and last_eval):
        # a resumed run evaluated step 0 in its earlier life: the summary comes from metrics.jsonl, as a straight run's
        from rl.train.report import before_after
        try:
            summary = before_after(run.out)
            first_eval, last_eval = first_eval or summary["before"], last_eval or summary["after"]
        except ValueError:  # no evaluation line was ever logged (logs removed by hand): no summary, not a failure
            pass
    if run.accelerator.is_main_process and first_eval and last_eval:
        from rl.train.report import before_after_table, plot_run
        print(f"[grpo] eval/accuracy {first_eval['eval/accuracy']:.3f} -> {last_eval['eval/accuracy']:.3f}, "
              f"eval/format {first_eval['eval/format']:.3f} -> {last_eval['eval/format']:.3f}\n"
              f"{before_after_table(run.out)}\n[grpo] plot: {plot_run(run.out)}", flush=True)
    run.accelerator.end_training()
    return {"first_eval": first_eval, "last_eval": last_eval, "output_dir": str(run.out)}


if __name__ == "__main__":
    import os
    # Run as a script (`accelerate launch rl/grpo.py`): behave like `python -m`, with the working directory (where
    # user reward modules named in recipes live) on the path instead of rl/ itself.
    if sys.path and os.path.abspath(sys.path[0]) == os.path.dirname(os.path.abspath(__file__)):
        sys.path[0] = os.getcwd()
    from rewards import RewardError
    from rl.config.cli import recipe_cli
    from rl.rollout.engines.worker import RolloutWorkerError
    recipe_cli(main, "rl/grpo.py", "r1_zero.yaml", failures=(RolloutWorkerError, RewardError))
