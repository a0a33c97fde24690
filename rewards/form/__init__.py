"""Rewards on the form of a completion rather than its correctness: format.py (`format`, `tag_count`,
`reasoning_steps`), length.py (`cosine`, `soft_overlong`), language.py (`language_consistency`), repetition.py, tools.py
(`tool_format`: the syntax of tool calls in multi-turn episodes)."""
