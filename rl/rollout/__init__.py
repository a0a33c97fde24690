"""Rollouts: how prompts become scored episodes, in two subpackages (imports point from episodes to engines):

engines/   the engines behind one interface (`RolloutEngine` in base.py; `make_engine` chooses one from the recipe's
           `rollout.engine`): hf.py (transformers), vllm.py + vllm_adapter.py (vLLM colocated: the only vllm import),
           vllm_server.py (the client of a rollout server), worker.py (an engine in its own process; placement.py
           where it runs, weight_stream.py the bucketed weight push, version_gate.py the server push gate),
           bench.py (engine throughput), install_vllm.sh. An engine turns token ids into token ids; it knows
           nothing of prompts, rewards or groups.
judge_engine.py  the `judge` reward's local backends on these engines (hf, vllm), registered with rewards.models.judge
           (imported by the GRPO stage before it builds its rewards).
episodes/  the code that turns prompts into episodes: collect.py (prompt sampling, generation, scoring, dynamic
           sampling), async_rollouts.py (generation ahead of training), evaluation.py (greedy and sampled held-out
           evaluation). Multi-turn episodes (an assistant turn, a tool call or environment step, its observation
           appended as token ids, the next turn) will live here too, as episodes/multi_turn.py beside collect.py;
           the tools they call (functions with JSON schemas, the sandboxed python tool) in rl/rollout/episodes/tools/
           and environments in rl/rollout/episodes/environments/, both built on the top-level `sandbox` package.

Imports: rl.core, rl.train (weights to push, model loading), rl.config, rewards, data, sandbox. Never the stages
(tests/test_layout.py); engines never import episodes.
"""
from __future__ import annotations

from rl.rollout.engines import make_engine

__all__ = ["make_engine"]
