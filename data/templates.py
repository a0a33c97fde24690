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


_REPLY_MARKER = "QQreplyQQ"  # plain letters: no template rewrites them (R1-Distill's drops text before </think>)


def completion_end_ids(tokenizer: Any, template: str) -> list[int]:
    """The token ids that close an assistant turn, appended to an SFT completion so that the model learns to stop
    where inference stops: the chat template's own end of turn (Qwen: `<|im_end|>`, not the base tokenizer's eos
    `<|endoftext|>`; R1-Distill: `<｜end▁of▁sentence｜>`), read off the template by rendering a reply; the
    tokenizer's eos for `r1_zero` / `plain` or when the template writes nothing after the reply."""
    if template == "chat":
        text = tokenizer.apply_chat_template([{"role": "user", "content": "hi"},
                                              {"role": "assistant", "content": _REPLY_MARKER}], tokenize=False)
        at = text.rfind(_REPLY_MARKER)
        suffix = text[at + len(_REPLY_MARKER):].rstrip() if at >= 0 else ""
        if suffix:
            return list(tokenizer(suffix, add_special_tokens=False)["input_ids"])
    return [tokenizer.eos_token_id]


def end_of_turn_token(tokenizer: Any, template: str) -> str | None:
    """The chat template's end-of-turn token when it is one token other than the tokenizer's eos (Qwen2.5 *base*
    tokenizers: eos <|endoftext|>, turns end with <|im_end|>), else None. A model SFT-trained to end its turns
    with it must have it as its eos, or the rollout engines, which stop at eos, never stop (open-r1 does the same)."""
    end = completion_end_ids(tokenizer, template)
    if len(end) == 1 and end[0] != tokenizer.eos_token_id:
        return tokenizer.convert_ids_to_tokens(end[0])
    return None


def keeps_final_reasoning(tokenizer: Any) -> bool:
    """Whether the chat template keeps the reasoning of the LAST assistant turn when it renders a conversation.
    R1-Distill's (and Qwen3's) templates drop everything up to </think> from assistant turns, so an SFT that lets the
    template render prompt + completion (`data.tokenize: trl`) trains on the answer only."""
    text = tokenizer.apply_chat_template([{"role": "user", "content": "hi"},
                                          {"role": "assistant", "content": f"<think> {_REPLY_MARKER} </think> ok"}],
                                         tokenize=False)
    return _REPLY_MARKER in text


def prefills_think(tokenizer: Any, template: str, system_prompt: str | None = None) -> bool:
    """Whether the rendered prompt already opens the reasoning (R1-Distill and Qwen3 templates end the generation
    prompt with `<think>`): a completion must then not start with its own `<think>`."""
    if template != "chat":
        return False
    text = tokenizer.apply_chat_template(render_prompt("hi", template, system_prompt), add_generation_prompt=True,
                                         tokenize=False)
    return text.rstrip().endswith("<think>")


def strip_opening_think(completion: str) -> str:
    """`<think> a </think> b` -> ` a </think> b` (for a prompt that prefilled `<think>`); other text unchanged."""
    stripped = completion.lstrip()
    return stripped[len("<think>"):] if stripped.startswith("<think>") else completion


Renderer = Callable[[Any], list[int]]
