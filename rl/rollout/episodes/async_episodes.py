"""Multi-turn episodes (tools, environments) with asynchronous rollouts: the whole episode loop runs inside the
rollout worker process, so every turn of a batch's episodes is generated with one policy version and the worker's
command order still bounds staleness (rl/rollout/episodes/async_rollouts.py).

    learner                                               worker process (rl/rollout/engines/worker_process.py)
    EpisodeWorker(worker).submit_rows(encoder, rows, p) -> ("episodes", job, rows, p, 0)
                                                           WorkerEpisodes.run: MultiTurnEngine.episodes on its own
                                                           engine, SandboxPool and PromptEncoder (built once from
                                                           the recipe's EpisodeSpec, tool_rollout.py)
    EpisodeWorker.result(job)                          <- (completions, episode metrics, prompts cut), version, s

The worker sends back Completions (token ids, masks, engine logprobs, tool stats in `info`), so the learner trains
on the engine's ids as in the synchronous loop; prompt cuts are merged into the learner's PromptEncoder so
`rollout/prompts_truncated` counts as there, and `EpisodeWorker.metrics` carries the tools/* metrics of the last
batch returned. `EpisodeWorker.episodes` (the MultiTurnEngine protocol) serves evaluation, queued behind the batches
in flight. Everything else (push_weights, close, pid, ...) goes to the RolloutWorker.
"""
from __future__ import annotations

from rl.core.episode import Completion, Episode, SamplingParams

RUNNER = "rl.rollout.episodes.async_episodes:WorkerEpisodes"  # EngineSpec.episode_runner


def worker_episodes(cfg) -> tuple[str, dict] | None:
    """(runner, picklable spec) for start_rollout_worker; None when the recipe's episodes are single-turn."""
    from dataclasses import asdict

    from rl.rollout.episodes.tool_rollout import episode_spec
    spec = episode_spec(cfg)
    return None if spec is None else (RUNNER, asdict(spec))


class WorkerEpisodes:
    """The worker process's side: the episode machinery around the worker's engine, built once from the spec."""

    def __init__(self, spec: dict, engine, model_path: str):
        from rl.rollout.episodes.collect import PromptEncoder
        from rl.rollout.episodes.tool_rollout import EpisodeSpec, build_episode_engine
        from rl.train.models import load_tokenizer
        if not isinstance(spec, dict):
            raise TypeError(f"episode spec: expected the dict of an EpisodeSpec, got {type(spec).__name__}")
        spec = EpisodeSpec(**spec)
        tokenizer = load_tokenizer(model_path)
        self.encoder = PromptEncoder(tokenizer, spec.template, spec.system_prompt, spec.max_prompt_length)
        self.engine = build_episode_engine(spec, engine, tokenizer)
        tick = getattr(engine, "on_progress", None)  # the worker's heartbeat: tool answers count as progress too
        if tick is not None:
            make_env = self.engine.make_env
            self.engine.make_env = lambda: TickingEnv(make_env(), tick)

    def run(self, batch: list[tuple], params: SamplingParams, first_group_id: int = 0
            ) -> tuple[list[Completion], dict[str, float], list]:
        """params.n episodes per (index, row), in order: (completions, episode metrics, the indices of `batch`
        whose prompt was cut at max_prompt_length)."""
        episodes = self.engine.episodes(self.encoder, batch, params, first_group_id)
        cut = [i for i, _ in batch if i in self.encoder.cut]
        return [e.completion for e in episodes], dict(self.engine.metrics), cut

    def close(self) -> None:
        """The sandbox pool (the worker closes its engine itself)."""
        if self.engine.pool is not None:
            self.engine.pool.close()


class TickingEnv:
    """An environment whose every `step` (a turn's tool calls answered) calls `tick` after it, so the worker's
    heartbeat reports progress while the tools run, not only while the engine decodes; the rest is the env's."""

    def __init__(self, env, tick):
        self.env, self.tick = env, tick

    def __getattr__(self, name):  # only for names not set here: the environment's
        if name == "env":
            raise AttributeError(name)
        return getattr(self.env, name)

    def step(self, turn):
        try:
            return self.env.step(turn)
        finally:
            self.tick()


class EpisodeWorker:
    """The learner's side: a RolloutWorker whose batches are whole multi-turn episodes (rows in, completions out)."""

    def __init__(self, worker):
        self.worker = worker
        self.metrics: dict[str, float] = {}  # the episode metrics of the last batch returned (tools/*)
        self._pending: dict[int, tuple] = {}  # job -> (encoder, n)

    def __getattr__(self, name):  # only for names not set here: the worker's
        if name == "worker":
            raise AttributeError(name)
        return getattr(self.worker, name)

    def submit_rows(self, encoder, batch: list[tuple], params: SamplingParams, first_group_id: int = 0) -> int:
        """params.n episodes per (index, row) of `batch`; returns the job."""
        job = self.worker.submit_episodes(batch, params, first_group_id)
        self._pending[job] = (encoder, params.n)
        return job

    def result(self, job: int) -> tuple[list[list[Completion]], int, float]:
        """(completions per row, n each, in order; the version that generated them; seconds), as RolloutWorker's."""
        out, version, seconds = self.worker.result(job)
        if job not in self._pending:  # a single-turn job submitted straight to the worker
            return out, version, seconds
        encoder, n = self._pending.pop(job)
        completions, self.metrics, cut = out
        encoder.cut.update(cut)
        if len(completions) % n:
            raise RuntimeError(f"episodes job {job}: {len(completions)} episodes is not a multiple of n={n}")
        return [completions[k:k + n] for k in range(0, len(completions), n)], version, seconds

    def episodes(self, encoder, batch: list[tuple], params: SamplingParams, first_group_id: int) -> list[Episode]:
        """The MultiTurnEngine protocol (evaluation): blocking, queued behind the jobs already submitted."""
        groups, _, _ = self.result(self.submit_rows(encoder, batch, params, first_group_id))
        return [Episode(group_id=first_group_id + g, example=row, completion=c)
                for g, ((_, row), group) in enumerate(zip(batch, groups, strict=True)) for c in group]
