"""The order in which rl/grpo.py drives a synchronous rollout engine (issue 16, defect 5): per step the rollouts
(every dynamic-sampling round), then `release_memory(weights_follow=True)` (vLLM sleep mode frees the GPU: level 2,
since the push follows), then the learner's update, then the push. The engine here is the transformers engine behind
a recording proxy; tests/rollout/engines/test_vllm_sleep.py shows what the vLLM engine does with each call."""
from __future__ import annotations

from pathlib import Path

TINY = str(Path(__file__).resolve().parents[2] / "recipes" / "tiny" / "r1_zero.yaml")


def test_each_step_generates_releases_trains_then_pushes(micro_model_dir, tmp_path, monkeypatch):
    import rl.rollout
    from rl import grpo
    from rl.train.learner import Learner

    log: list[str] = []
    make_engine = rl.rollout.make_engine

    class Recording:
        def __init__(self, engine):
            self.engine = engine

        def generate(self, prompts, params):
            log.append("generate")
            return self.engine.generate(prompts, params)

        def release_memory(self, weights_follow=True):
            log.append(f"release_memory(weights_follow={weights_follow})")

        def update_weights(self, model, weights=None):
            log.append("update_weights")
            self.engine.update_weights(model, weights)

        def close(self):
            self.engine.close()

    learner_step = Learner.step

    def step(self, batch):
        log.append("learner.step")
        return learner_step(self, batch)

    monkeypatch.setattr(rl.rollout, "make_engine", lambda *a, **k: Recording(make_engine(*a, **k)))
    monkeypatch.setattr(Learner, "step", step)
    grpo.main([TINY, f"model.name_or_path={micro_model_dir}", f"output_dir={tmp_path / 'run'}", "train.max_steps=2",
               "train.batch_size=8", "rollout.group_size=4", "train.micro_batch_size=8",
               "rollout.max_completion_length=8", "data.test=null", "data.num_train=32", "logging.save_every=0",
               "logging.progress_bar=false"])
    step_calls = ["generate", "release_memory(weights_follow=True)", "learner.step", "update_weights"]
    assert log == step_calls * 2
