"""Prompt templates: pure functions from an example's prompt to the text (or messages) the model sees.

- `r1_zero`: DeepSeek-R1-Zero's plain-text template (paper, Table 1). The model is expected to answer
  `<think> ... </think> <answer> ... </answer>`; no chat template is involved, which is what R1-Zero runs on base models.
- `chat`: the tokenizer's own chat template, with an optional system prompt (instruct/distilled models).
- `plain`: the prompt as it is.

    >>> render_prompt("What is 2 + 3?", "r1_zero").endswith("User: What is 2 + 3?. Assistant:")
    True
"""
from __future__ import annotations

from typing import Any, Callable

R1_ZERO_TEMPLATE = (
    "A conversation between User and Assistant. The User asks a question, and the Assistant solves it. "
    "The Assistant first thinks about the reasoning process in the mind and then provides the User with the answer. "
    "The reasoning process is enclosed within <think> </think> and answer is enclosed within <answer> </answer> tags, "
    "respectively, i.e., <think> reasoning process here </think> <answer> answer here </answer>. "
    "User: {prompt}. Assistant:"
)

TEMPLATES = ("r1_zero", "chat", "plain")


def render_prompt(prompt: str | list[dict[str, str]], template: str, system_prompt: str | None = None
                  ) -> str | list[dict[str, str]]:
    """Text for `r1_zero`/`plain`, a message list for `chat` (tokenized later with the tokenizer's chat template)."""
    if template == "r1_zero":
        if not isinstance(prompt, str):
            raise ValueError("template r1_zero needs a string prompt, got a message list")
        return R1_ZERO_TEMPLATE.format(prompt=prompt)
    if template == "plain":
        return prompt
    if template == "chat":
        messages = [{"role": "user", "content": prompt}] if isinstance(prompt, str) else list(prompt)
        if system_prompt and messages[0]["role"] != "system":
            messages = [{"role": "system", "content": system_prompt}] + messages
        return messages
    raise ValueError(f"unknown template {template!r}; valid: {', '.join(TEMPLATES)}")


def prompt_token_ids(tokenizer: Any, prompt: str | list[dict], template: str, system_prompt: str | None = None
                     ) -> list[int]:
    """Token ids of the rendered prompt (the chat template adds the generation prompt)."""
    rendered = render_prompt(prompt, template, system_prompt)
    if isinstance(rendered, str):
        return tokenizer(rendered, add_special_tokens=False)["input_ids"]
    ids = tokenizer.apply_chat_template(rendered, add_generation_prompt=True, tokenize=True)
    return list(ids["input_ids"] if isinstance(ids, dict) or hasattr(ids, "keys") else ids)


Renderer = Callable[[Any], list[int]]
