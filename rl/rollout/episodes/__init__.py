"""Episodes: the code that turns prompts into scored episodes with an engine from rl.rollout.engines.

collect.py (prompt sampling, generation, scoring, dynamic sampling), async_rollouts.py (generation ahead of
training, in a worker process), evaluation.py (greedy and sampled held-out evaluation). Multi-turn episodes with
tools and environments belong here (episodes/multi_turn.py, episodes/tools/, episodes/environments/): the episode
loop appends each observation as token ids to the completion and marks them 0 in the completion mask.

Imports: rl.core, rl.train, rl.config, rl.rollout.engines, rewards, data, sandbox. Never the stages.
"""
