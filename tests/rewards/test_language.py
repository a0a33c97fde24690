"""language_consistency = target-language words / (Latin + CJK words) in the chain of thought (R1 §2.3.2)."""
from __future__ import annotations

import pytest

from rewards import get_reward

CASES = [  # (completion, language, scope, expected)
    ("<think> add two and three </think> <answer> 5 </answer>", "en", "think", 1.0),
    # Latin: add, then; CJK: 加, 再, 乘 -> 2 / 5
    ("<think> add 2 加 3 then 再乘 4 </think> <answer> 20 </answer>", "en", "think", 2 / 5),
    ("<think> add 2 加 3 then 再乘 4 </think> <answer> 20 </answer>", "zh", "think", 3 / 5),
    ("<think> 先加再乘 </think> <answer> 20 </answer>", "zh", "think", 1.0),       # 4 Han characters, no Latin
    ("<think> 先加再乘 </think> <answer> 20 </answer>", "en", "think", 0.0),
    # the answer block is not the chain: "twenty" does not count with scope think ...
    ("<think> 先加 </think> <answer> twenty </answer>", "en", "think", 0.0),
    # ... but does with scope all, where the tag names are Latin words too: think, think, answer, answer, twenty
    # = 5 Latin, 先加 = 2 CJK -> 5/7
    ("<think> 先加 </think> <answer> twenty </answer>", "en", "all", 5 / 7),
    ("<think> 2 + 3 = 5 </think> <answer> 5 </answer>", "en", "think", 1.0),        # no words: nothing mixed
    ("<answer> 5 </answer>", "en", "think", 0.0),                                    # no chain of thought
    ("", "en", "think", 0.0),
    # prefilled <think> (R1-Distill templates): the chain is everything before </think>
    ("first add, 然后 multiply </think> \\boxed{20}", "en", "think", 3 / 5),
    # accented Latin is Latin; kana and hangul are CJK-script words
    ("<think> café résumé ですね </think>", "en", "think", 2 / 5),
    ("<think> 한국어 ok </think>", "zh", "think", 3 / 4),
    # the last think block is the chain
    ("<think> 中文 </think> <think> english only </think>", "en", "think", 1.0),
]


@pytest.mark.parametrize("completion, language, scope, expected", CASES)
def test_language_consistency_values(completion, language, scope, expected):
    reward = get_reward("language_consistency", language=language, scope=scope)
    assert reward([completion]) == [pytest.approx(expected)]


def test_chat_message_completions_and_batch():
    reward = get_reward("language_consistency")
    messages = [[{"role": "assistant", "content": "<think> 加 and </think> 5"}],
                [{"role": "assistant", "content": "<think> and </think> 5"}]]
    assert reward(messages) == [pytest.approx(0.5), 1.0]


@pytest.mark.parametrize("params, message", [
    ({"language": "fr"}, "language 'fr' is not one of en, zh"),
    ({"scope": "answer"}, "scope 'answer' is not one of think, all"),
])
def test_bad_parameters_fail_when_built(params, message):
    with pytest.raises(ValueError, match=message):
        get_reward("language_consistency", **params)


def test_long_alternating_input():
    # 400k characters alternating scripts: 200k one-letter Latin words, 200k Han characters -> 1/2 (the regexes have
    # no nested quantifiers, so this is linear; the reward is `cheap` and runs in the scorer's parent process)
    text = "<think> " + "a加" * 200_000 + " </think>"
    assert get_reward("language_consistency")([text]) == [pytest.approx(0.5)]
