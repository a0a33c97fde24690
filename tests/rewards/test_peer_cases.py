"""Other projects' reward test cases, ported as data (inputs and expected values; none of their code), with credit:

- open-r1: huggingface/open-r1 tests/test_rewards.py (commit 1416fa0), the rows marked OPEN_R1 below;
- TRL: huggingface/trl tests/test_rewards.py (commit f2cd577), the rows marked TRL below;
- Math-Verify: huggingface/Math-Verify tests/test_all.py, test_boxed.py, test_numina_cases.py, test_open_thoughts.py,
  test_yujianll.py, test_strict.py (commit 5d148cf): 266 (gold, prediction, expected) rows in
  tests/rewards/fixtures/peer_math_verify.json, scored by our `accuracy` with the prediction as the completion.

Every row asserts the peer's expected value, except where our verdict differs on purpose: such a row carries our
value and the reason (`why`), and DEVIATIONS counts them, so a change in either direction shows up here.
"""
from __future__ import annotations

import json
import pickle
import threading
from pathlib import Path

import pytest

from rewards import get_reward

ACC = get_reward("accuracy", timeout_s=5.0)
MV_ROWS = json.loads((Path(__file__).parent / "fixtures" / "peer_math_verify.json").read_text())


def msg(content: str) -> list[dict]:
    return [{"role": "assistant", "content": content}]


# -- accuracy (gold in the `solution` column, as both projects call it) ------------------------------------------------
ACCURACY = [  # (source, completion, solution, expected)
    ("OPEN_R1 test_accuracy_reward_correct_answer", r"\boxed{\frac{63}{400}}", r"\frac{63}{400}", 1.0),
    ("OPEN_R1 test_accuracy_reward_wrong_answer", r"\boxed{\frac{64}{400}}", r"\frac{63}{400}", 0.0),
    ("OPEN_R1 test_accuracy_reward_wrong_answer_no_latex", r"\boxed{3}", "6", 0.0),
    ("OPEN_R1 test_multiple_completions", r"\boxed{\frac{63}{400}}", r"\frac{63}{400}", 1.0),
    ("OPEN_R1 test_multiple_completions", r"\boxed{\frac{64}{400}}", r"\frac{63}{400}", 0.0),
    ("TRL test_accuracy_reward_correct_answer", r"\boxed{\frac{63}{400}}", r"\frac{63}{400}", 1.0),
    ("TRL test_accuracy_reward_correct_answer", r"\boxed{\frac{63}{400}}", "63/400", 1.0),
    ("TRL test_accuracy_reward_wrong_answer", r"\boxed{\frac{64}{400}}", r"\frac{63}{400}", 0.0),
    ("TRL test_accuracy_reward_wrong_answer_no_latex", r"\boxed{3}", "6", 0.0),
    ("TRL test_accuracy_reward_unparsable_gold", "Answer is forty two.", "Answer is forty two.", None),
    ("TRL test_accuracy_reward_unparsable_gold", r"Some other content. \boxed{43}.", "Answer is forty three.", None),
]

# -- TRL's reasoning_accuracy_reward = our accuracy with after_think=True ----------------------------------------------
AFTER_THINK = [  # (source, completion, solution, delimiters, expected)
    ("TRL test_correct_answer_yields_unit_reward", r"<think> Reasoning content </think> \boxed{\frac{63}{400}}",
     r"\frac{63}{400}", None, 1.0),
    ("TRL test_correct_answer_yields_unit_reward", r"Reasoning content </think> \boxed{\frac{63}{400}}",
     r"\frac{63}{400}", None, 1.0),
    ("TRL test_correct_answer_with_custom_tags_yields_unit_reward",
     r"<REASONING_START> Reasoning content </REASONING_END> \boxed{\frac{63}{400}}", r"\frac{63}{400}",
     ["</REASONING_END>"], 1.0),
    ("TRL test_incorrect_answer_yields_zero_reward", r"<think> Reasoning content </think> \boxed{\frac{64}{400}}",
     r"\frac{63}{400}", None, 0.0),
    ("TRL test_correct_answer_in_reasoning_yields_zero_reward", r"<think> My answer is \boxed{42} </think> Some other text.",
     r"\boxed{42}", None, 0.0),
    ("TRL test_correct_answer_in_reasoning_yields_zero_reward",
     r"<think> The answer is \boxed{42} </think> Here's a wrong answer: \boxed{43}.", r"\boxed{42}", None, 0.0),
    ("TRL test_incomplete_reasoning_yields_zero_reward", r"<think> Incomplete reasoning without closing tag",
     r"\frac{63}{400}", None, 0.0),
    ("TRL test_incomplete_reasoning_yields_zero_reward",
     r"Correct answer \frac{63}{400} but completely missing reasoning content", r"\frac{63}{400}", None, 0.0),
    ("TRL test_unparsable_gold_solution_yields_none_reward", r"<think> Reasoning content </think> \boxed{42}",
     "forty two", None, None),
]

# -- cosine: open-r1 measures characters (content padded with spaces), TRL measures completion_ids -------------------
COSINE = [  # (source, completion, solution, length, params, expected); length None: characters of the completion
    ("OPEN_R1 test_cosine_scaled_reward", r"\boxed{\frac{63}{400}}", r"\frac{63}{400}", 20, {}, 0.943),
    ("OPEN_R1 test_cosine_scaled_reward", r"\boxed{\frac{63}{400}}", r"\frac{63}{400}", 80, {}, 0.547),
    ("OPEN_R1 test_cosine_scaled_reward", r"\boxed{\frac{64}{400}}", r"\frac{63}{400}", 20, {}, -0.942),
    ("OPEN_R1 test_cosine_scaled_reward", r"\boxed{\frac{64}{400}}", r"\frac{63}{400}", 80, {}, -0.547),
    ("TRL test_correct_shorter_rewarded_more", r"\boxed{\frac{1}{3}}", r"\frac{1}{3}", 25, {}, 0.92678),
    ("TRL test_correct_shorter_rewarded_more", r"\boxed{\frac{1}{3}}", r"\frac{1}{3}", 75, {}, 0.57322),
    ("TRL test_wrong_longer_penalized_less", r"\boxed{\frac{1}{2}}", r"\frac{1}{3}", 25, {}, -0.92678),
    ("TRL test_wrong_longer_penalized_less", r"\boxed{\frac{1}{2}}", r"\frac{1}{3}", 75, {}, -0.57322),
    ("TRL test_midpoint_values", r"\boxed{\frac{1}{3}}", r"\frac{1}{3}", 50, {}, 0.75),
    ("TRL test_midpoint_values", r"\boxed{\frac{1}{2}}", r"\frac{1}{3}", 50, {}, -0.75),
    ("TRL test_correct_boundary_values", r"\boxed{\frac{1}{3}}", r"\frac{1}{3}", 0, {}, 1.0),
    ("TRL test_correct_boundary_values", r"\boxed{\frac{1}{3}}", r"\frac{1}{3}", 100, {}, 0.5),
    ("TRL test_wrong_boundary_values", r"\boxed{\frac{1}{2}}", r"\frac{1}{3}", 0, {}, -1.0),
    ("TRL test_wrong_boundary_values", r"\boxed{\frac{1}{2}}", r"\frac{1}{3}", 100, {}, -0.5),
    ("TRL test_length_exceeding_max_len_is_clamped", r"\boxed{\frac{1}{3}}", r"\frac{1}{3}", 200, {}, 0.5),
    ("TRL test_length_exceeding_max_len_is_clamped", r"\boxed{\frac{1}{2}}", r"\frac{1}{3}", 200, {}, -0.5),
    ("TRL test_unparsable_gold_yields_none", r"\boxed{42}", "forty two", 50, {}, None),
    ("TRL test_custom_value_bounds", r"\boxed{\frac{1}{3}}", r"\frac{1}{3}", 50,
     {"min_value_correct": 0.0, "max_value_correct": 2.0}, 1.0),
]

# -- structure rewards (open-r1 names: format_reward, tag_count_reward, reasoning_steps_reward) -------------------------
FORMAT = [  # (source, completion, expected)
    ("OPEN_R1 test_format_reward_correct", "<think>\nSome reasoning\n</think>\n<answer>\nThe answer\n</answer>", 1.0),
    ("OPEN_R1 test_format_reward_specific_multiline",
     "<think>\nI will count each distinct object in the image:\n1. Purple scooter\n2. Red bicycle\n3. Green motorcycle"
     "\n4. Gray sedan\n5. Yellow school bus\n6. Small green double-decker bus\n7. Small red car\n8. Small purple car\n"
     "9. Small gray dirt bike\n\nThere are 9 distinct objects in total.\n</think>\n<answer>\n9\n</answer>", 1.0),
] + [("OPEN_R1 test_format_reward_incorrect", text, 0.0) for text in [
    "<think>Only thinking</think>", "<answer>Only answer</answer>", "No tags at all",
    "<think>Missing closing</think><answer>Missing closing", "<think>Wrong order</answer><answer>Wrong order</think>"]]
TAG_COUNT = [  # (source, completion, expected)
    ("OPEN_R1 test_tag_count_rewards_all_correct", "<think>\nSome reasoning\n</think>\n<answer>\nThe answer\n</answer>",
     1.0),
    ("OPEN_R1 test_tag_count_rewards_missing_think_begin", "Some reasoning\n</think>\n<answer>\nThe answer\n</answer>",
     0.75),
    ("OPEN_R1 test_tag_count_rewards_missing_think_end", "<think>\nSome reasoning\n<answer>\nThe answer\n</answer>", 0.75),
    ("OPEN_R1 test_tag_count_rewards_missing_answer_begin", "<think>\nSome reasoning\n</think>\nThe answer\n</answer>",
     0.75),
    ("OPEN_R1 test_tag_count_rewards_missing_answer_end", "<think>\nSome reasoning\n</think>\n<answer>\nThe answer", 0.75),
    ("OPEN_R1 test_tag_count_rewards_missing_all_tags", "Some reasoning\nThe answer", 0.0),
]
REASONING_STEPS = [  # (source, completion, expected)
    ("OPEN_R1 test_reasoning_steps_reward", "Step 1: First step\nStep 2: Second step\nStep 3: Third step", 1.0),
    ("OPEN_R1 test_reasoning_steps_reward", "First, we do this.\nSecond, we do that.\nFinally, we conclude.", 1.0),
    ("OPEN_R1 test_reasoning_steps_reward", "Step 1: Only step", 1 / 3),
    ("OPEN_R1 test_reasoning_steps_reward", "First, we do this.\nFinally, we conclude.", 2 / 3),
    ("OPEN_R1 test_reasoning_steps_reward", "Just plain text without any clear steps", 0.0),
]

# -- repetition: open-r1 on words; TRL on token ids, ported as space-separated ids (the same n-gram arithmetic) --------
REPETITION = [  # (source, completion, ngram_size, max_penalty, language, expected)
    ("OPEN_R1 test_no_repetition", "this is a test sentence", 2, -1.0, "en", 0.0),
    ("OPEN_R1 test_full_repetition", "this this this this this", 2, -1.0, "en", -0.75),
    ("OPEN_R1 test_partial_repetition", "this is a this is a test", 2, -1.0, "en", -1 / 3),
    ("OPEN_R1 test_multiple_completions", "this is a test", 3, -0.5, "en", 0.0),
    ("OPEN_R1 test_multiple_completions", "test test test test", 3, -0.5, "en", -0.25),
    ("OPEN_R1 test_empty_completion", "", 2, -1.0, "en", 0.0),
    ("OPEN_R1 test_different_ngram_size", "this is a this is a test", 3, -2.0, "en", -0.4),
    ("OPEN_R1 test_mixed_case", "This is A Test", 2, -1.0, "en", 0.0),
    ("OPEN_R1 test_mixed_case", "this IS a test", 2, -1.0, "en", 0.0),
    ("OPEN_R1 test_one_word_completion", "word", 3, -1.0, "en", 0.0),
    ("OPEN_R1 test_two_word_completion", "two words", 3, -1.0, "en", 0.0),
    ("OPEN_R1 test_three_word_completion", "three different words", 3, -1.0, "en", 0.0),
    ("OPEN_R1 test_three_word_repetition_completion", "word word word word", 3, -1.0, "en", -0.5),
    ("OPEN_R1 test_four_word_completion_with_repetition", "one two one two", 3, -1.0, "en", 0.0),
    ("OPEN_R1 test_five_word_completion_with_repetition", "A B C A B", 3, -0.5, "en", 0.0),
    ("OPEN_R1 test_six_word_completion_with_repetition", "A B C A B C", 3, -1.0, "en", -0.25),
    ("OPEN_R1 test_long_completion_with_repetition", "A B C A B C E F G A B C A B C", 3, -1.0, "en", -0.3846),
    ("OPEN_R1 test_long_completion_without_repetition", "A B C D E F G H I J K L", 3, -1.0, "en", 0.0),
    ("OPEN_R1 test_full_repetition_with_language", "that that that that that", 2, -1.0, "en", -0.75),
    ("TRL test_no_repetition_yields_zero", "1 2 3 4", 2, -1.0, "auto", 0.0),
    ("TRL test_full_repetition_approaches_max_penalty", "5 5 5 5 5", 2, -1.0, "auto", -0.75),
    ("TRL test_partial_repetition", "1 2 1 2 1 2", 2, -1.0, "auto", -0.6),
    ("TRL test_completion_shorter_than_ngram_size_yields_zero", "1 2", 3, -1.0, "auto", 0.0),
    ("TRL test_completion_exactly_ngram_size_yields_zero", "1 2 3", 3, -1.0, "auto", 0.0),
    ("TRL test_empty_completion_yields_zero", "", 3, -1.0, "auto", 0.0),
    ("TRL test_max_penalty_scales_reward", "5 5 5 5 5", 2, -0.5, "auto", -0.375),
    ("TRL test_ngram_size_changes_reward", "1 2 3 1 2 3", 2, -1.0, "auto", -0.4),
    ("TRL test_ngram_size_changes_reward", "1 2 3 1 2 3", 3, -1.0, "auto", -0.25),
    ("TRL test_batch_of_completions", "9", 2, -1.0, "auto", 0.0),
]
# open-r1's language="zh" segments words with jieba: 这个这个这个这个这个 -> 5 x 这个 -> 4 bigrams, 1 distinct -> -0.75.
# We use character n-grams (no extra dependency): 10 characters -> 9 bigrams, 2 distinct (这个, 个这) -> -7/9.
REPETITION_DEVIATIONS = [("OPEN_R1 test_full_repetition_with_language", "这个这个这个这个这个", 2, -1.0, "zh", -0.75, -7 / 9)]

SOFT_OVERLONG = [  # (source, token count, expected) with max_len=100, buffer=20 (their max_completion_len, cache)
    ("OPEN_R1 test_soft_overlong_punishment_short_completion", 50, 0.0),
    ("OPEN_R1 test_soft_overlong_punishment_long_completion", 110, -1.0),
    ("OPEN_R1 test_soft_overlong_punishment_intermediate_completion", 90, -0.5),
    ("TRL test_soft_overlong_punishment_short_completion", 50, 0.0),
    ("TRL test_soft_overlong_punishment_long_completion", 110, -1.0),
    ("TRL test_soft_overlong_punishment_intermediate_completion", 90, -0.5),
]


@pytest.mark.parametrize("source,completion,solution,expected", ACCURACY)
def test_accuracy(source, completion, solution, expected):
    assert ACC([msg(completion)], solution=[solution]) == [expected]


def test_accuracy_in_a_worker_thread():  # TRL test_accuracy_reward_in_worker_thread
    results, errors = [], []

    def target():
        try:
            results.extend(ACC([msg(r"\boxed{\frac{1}{3}}")], solution=[r"\frac{1}{3}"]))
        except Exception as e:  # noqa: BLE001
            errors.append(e)

    thread = threading.Thread(target=target)
    thread.start()
    thread.join()
    assert not errors and results == [1.0]


@pytest.mark.parametrize("source,completion,solution,delimiters,expected", AFTER_THINK)
def test_after_think(source, completion, solution, delimiters, expected):
    params = {"reasoning_delimiters": delimiters} if delimiters else {}
    assert get_reward("accuracy", after_think=True, **params)([msg(completion)], solution=[solution]) == [expected]


@pytest.mark.parametrize("source,completion,solution,length,params,expected", COSINE)
def test_cosine(source, completion, solution, length, params, expected):
    cosine = get_reward("cosine", max_len=100, **params)
    if source.startswith("OPEN_R1"):  # lengths in characters: the completion padded with spaces
        out = cosine([msg(completion + " " * (length - len(completion)))], solution=[solution])
    else:  # TRL: lengths from completion_ids
        out = cosine([msg(completion)], solution=[solution], completion_ids=[[1] * length])
    assert out == [None if expected is None else pytest.approx(expected, abs=1e-2 if source.startswith("OPEN") else 1e-4)]


def test_cosine_is_picklable():  # TRL test_reward_is_picklable
    cosine = pickle.loads(pickle.dumps(get_reward("cosine", max_len=100)))
    assert cosine([msg(r"\boxed{\frac{1}{3}}")], solution=[r"\frac{1}{3}"], completion_ids=[[1] * 50]) == [0.75]
    assert cosine.__name__ == "cosine"


@pytest.mark.parametrize("source,completion,expected", FORMAT)
def test_format(source, completion, expected):
    assert get_reward("format")([msg(completion)]) == [expected]


@pytest.mark.parametrize("source,completion,expected", TAG_COUNT)
def test_tag_count(source, completion, expected):
    assert get_reward("tag_count")([msg(completion)]) == [expected]


@pytest.mark.parametrize("source,completion,expected", REASONING_STEPS)
def test_reasoning_steps(source, completion, expected):
    assert get_reward("reasoning_steps")([msg(completion)]) == [pytest.approx(expected)]


@pytest.mark.parametrize("source,completion,n,max_penalty,language,expected", REPETITION)
def test_repetition(source, completion, n, max_penalty, language, expected):
    rep = get_reward("repetition", ngram_size=n, max_penalty=max_penalty, language=language)
    assert rep([msg(completion)]) == [pytest.approx(expected, abs=1e-4)]


@pytest.mark.parametrize("source,completion,n,max_penalty,language,peer,ours", REPETITION_DEVIATIONS)
def test_repetition_deviations(source, completion, n, max_penalty, language, peer, ours):
    rep = get_reward("repetition", ngram_size=n, max_penalty=max_penalty, language=language)
    assert rep([msg(completion)]) == [pytest.approx(ours)] and ours != pytest.approx(peer)


@pytest.mark.parametrize("source,length,expected", SOFT_OVERLONG)
def test_soft_overlong(source, length, expected):
    reward = get_reward("soft_overlong", max_len=100, buffer=20)
    assert reward([""], completion_ids=[[1] * length]) == [pytest.approx(expected)]


@pytest.mark.parametrize("row", MV_ROWS, ids=[f"{i}-{r['source'].rsplit('::', 1)[-1]}" for i, r in enumerate(MV_ROWS)])
def test_math_verify_cases(row):
    expected = row["ours"] if "why" in row else row["expected"]
    assert ACC([row["completion"]], answer=[row["gold"]]) == [None if expected is None else float(expected)]


def test_peer_case_counts():
    """How many peer cases are ported, and how many of them we score differently on purpose (each with a reason)."""
    deviations = [r for r in MV_ROWS if "why" in r]
    assert len(MV_ROWS) == 266 and len(deviations) == 6 and all(r["why"] for r in deviations)
    open_r1 = [t for t in ACCURACY + AFTER_THINK + COSINE + FORMAT + TAG_COUNT + REASONING_STEPS + REPETITION
               + REPETITION_DEVIATIONS + SOFT_OVERLONG if t[0].startswith("OPEN_R1")]
    trl = [t for t in ACCURACY + AFTER_THINK + COSINE + REPETITION + SOFT_OVERLONG if t[0].startswith("TRL")]
    assert (len(open_r1), len(trl)) == (50, 42)  # + TRL's worker-thread and pickling tests
