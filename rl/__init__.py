"""GRPO reasoning pipeline: the DeepSeek-R1 recipe (R1-Zero GRPO, cold-start SFT, distillation) as a library."""
