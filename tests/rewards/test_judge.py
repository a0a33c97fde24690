"""`judge` (rewards/models/judge.py, judge_text.py): the verdict parser and the template as tables, the cache and the
metrics with a fake backend, the rules-first fallback (model-based verification where `accuracy` returns None), and
the parameter checks. The HTTP backend and the local engines have their own files (test_judge_backends.py)."""
from __future__ import annotations

import pytest

from rewards import RewardScorer, get_reward
from rewards.models.judge import Judge
from rewards.models.judge_text import (DEFAULT_TEMPLATE, NO_REFERENCE, check_template, parse_verdict,
                                       question_text, render_prompt)


@pytest.mark.parametrize("text, parser, max_score, expected", [
    ("Score: 7", "score", 10, 0.7),
    ("The answer is right.\nScore: 10", "score", 10, 1.0),
    ("score:0", "score", 10, 0.0),
    ("**Score:** 3", "score", 10, 0.3),                # markdown bold around the label
    ("Score: **4**", "score", 5, 0.8),                  # bold number: 4 / 5
    ("Score: 3/4", "score", 10, 0.75),                  # the judge's own scale wins: 3 / 4
    ("score = 2.5", "score", 5, 0.5),
    ("Score: 2 at first... Final Score: 9", "score", 10, 0.9),   # the LAST score counts
    ("Score: 11", "score", 10, None),                   # out of range: None, not clipped to 1
    ("Score: -1", "score", 10, None),
    ("Score: 5/0", "score", 10, None),
    ("I would give it a seven.", "score", 10, None),    # no "Score: N" at all
    ("", "score", 10, None),
    ("Verdict: yes", "yes_no", 10, 1.0),
    ("Verdict: NO", "yes_no", 10, 0.0),
    ("verdict = correct", "yes_no", 10, 1.0),
    ("Correct: false", "yes_no", 10, 0.0),
    ("Verdict: no. On reflection... Verdict: yes", "yes_no", 10, 1.0),   # the last verdict
    ("They agree, so yes.", "yes_no", 10, 1.0),          # no "Verdict:": a final yes/no word
    ("It is incorrect", "yes_no", 10, 0.0),
    ("yes, but then it says 7", "yes_no", 10, None),     # a yes that is not final and not a verdict
    ("Score: 8", "yes_no", 10, None),                    # the other parser's format
])
def test_parse_verdict(text, parser, max_score, expected):
    assert parse_verdict(text, parser, max_score) == (None if expected is None else pytest.approx(expected))


def test_unknown_parser_is_one_line():
    with pytest.raises(ValueError, match=r"^judge: parser='stars' is not one of: score, yes_no$"):
        parse_verdict("Score: 1", "stars")


@pytest.mark.parametrize("template, question, answer, reference, expected", [
    ("Q:{question} A:{answer} R:{reference}", "2+3?", "5", "5", "Q:2+3? A:5 R:5"),
    ("Q:{question} A:{answer} R:{reference}", "2+3?", "5", None, f"Q:2+3? A:5 R:{NO_REFERENCE}"),
    ("Q:{question} A:{answer} R:{reference}", "2+3?", "5", "  ", f"Q:2+3? A:5 R:{NO_REFERENCE}"),
    ("A:{answer} of {max_score}", "", "x", None, "A:x of 10"),
    # a completion holding a placeholder or braces is text, never substituted again (no injection)
    ("A:{answer} R:{reference}", "q", "{reference} {0} {", "gold", "A:{reference} {0} { R:gold"),
])
def test_render_prompt(template, question, answer, reference, expected):
    assert render_prompt(template, question, answer, reference) == expected


@pytest.mark.parametrize("prompt, expected", [
    ("What is 2+3?", "What is 2+3?"),
    ([{"role": "system", "content": "Think."}, {"role": "user", "content": "2+3?"}], "2+3?"),
    ([{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}, {"role": "user", "content": "c"}],
     "c"),
    (None, ""),
])
def test_question_text(prompt, expected):
    assert question_text(prompt) == expected


def test_default_template_holds_every_placeholder():
    assert check_template(DEFAULT_TEMPLATE) == DEFAULT_TEMPLATE
    for ph in ("{question}", "{answer}", "{reference}", "{max_score}"):
        assert ph in DEFAULT_TEMPLATE


class FakeBackend:
    """Answers "Score: N" with N = the number of characters of the answer line mod 11 (a deterministic judge), or
    `reply` when given; records every prompt it is asked; `fail` marks prompts that fail (None)."""

    name = "fake"

    def __init__(self, reply=None, fail=()):
        self.asked: list[str] = []
        self.reply, self.fail = reply, set(fail)

    def warmup(self):
        pass

    def generate(self, prompts):
        self.asked.extend(prompts)
        texts = []
        for p in prompts:
            answer = p.split("A:")[1].split(" R:")[0]
            texts.append(None if answer in self.fail else self.reply or f"Score: {len(answer) % 11}")
        return texts, {"calls": float(len(prompts)), "failed_calls": float(sum(t is None for t in texts))}


def judge_with(backend, cache_size=16, rules=None, parser="score"):
    return Judge(backend, "Q:{question} A:{answer} R:{reference}", parser, 10, "after_think", ("</think>",),
                 "answer", cache_size, rules)


def test_scores_cache_and_in_batch_duplicates():
    backend = FakeBackend()
    judge = judge_with(backend)
    prompts = ["2+3?", "2+3?", "2+3?"]
    comps = ["<think> hm </think>five", "<think> other path </think>five", "abc"]  # rows 0, 1: the same answer
    # answers "five" (4 chars -> Score: 4 -> 0.4) and "abc" (3 -> 0.3)
    assert judge(comps, prompts=prompts, answer=["5"] * 3) == pytest.approx([0.4, 0.4, 0.3])
    assert len(backend.asked) == 2  # "five" judged once for two rows
    counts = judge.drain_metrics()
    assert (counts["calls"], counts["cache_hits"], counts["failed_calls"]) == (2.0, 1.0, 0.0)
    # the same question + answer + reference again: from the cache, no call
    assert judge(["abc"], prompts=["2+3?"], answer=["5"]) == pytest.approx([0.3])
    assert len(backend.asked) == 2
    # another reference is another prompt: one call
    judge(["abc"], prompts=["2+3?"], answer=["6"])
    assert len(backend.asked) == 3
    m = judge.summarize(judge.drain_metrics())
    assert (m["calls"], m["cache_hits"], m["parse_failures"]) == (1.0, 1.0, 0.0)


def test_the_cache_is_bounded_lru_and_zero_turns_it_off():
    backend = FakeBackend()
    judge = judge_with(backend, cache_size=2)
    for a in ("a", "bb", "a", "ccc", "a", "bb"):
        judge([a], prompts=["q"], answer=["g"])
    # a(call) bb(call) a(hit) ccc(call, evicts bb: a was used last) a(hit) bb(call)
    assert [p.split("A:")[1].split(" ")[0] for p in backend.asked] == ["a", "bb", "ccc", "bb"]
    assert len(judge.cache) == 2
    off = FakeBackend()
    judge = judge_with(off, cache_size=0)
    judge(["a"], prompts=["q"], answer=["g"])
    judge(["a"], prompts=["q"], answer=["g"])
    assert len(off.asked) == 2 and not judge.cache


def test_unparseable_replies_are_none_and_counted_failed_calls_are_not_cached():
    judge = judge_with(FakeBackend(reply="Looks fine to me."))
    assert judge(["x", "y"], prompts=["q", "q"], answer=["g", "g"]) == [None, None]
    assert judge.summarize(judge.drain_metrics())["parse_failures"] == 2.0
    backend = FakeBackend(fail={"bad"})
    judge = judge_with(backend)
    assert judge(["bad", "ok"], prompts=["q", "q"], answer=["g", "g"]) == [None, pytest.approx(0.2)]
    judge(["bad"], prompts=["q"], answer=["g"])  # asked again: a failed call is not a verdict
    assert [p.split("A:")[1].split(" ")[0] for p in backend.asked] == ["bad", "ok", "bad"]
    assert judge.summarize(judge.drain_metrics())["failed_calls"] == 2.0


def test_rules_first_the_judge_only_where_accuracy_cannot_judge():
    backend = FakeBackend(reply="Verdict: yes")
    judge = judge_with(backend, rules=get_reward("accuracy"), parser="yes_no")
    comps = ["<answer> 4 </answer>", "<answer> 5 </answer>", "<answer> blue </answer>", "<answer> 4 </answer>"]
    gold = ["4", "4", "the sky is blue", "hello world"]
    # accuracy: 1.0 (4 = 4), 0.0 (5 != 4), None (gold is no number), None -> the judge says yes (1.0) for the last two
    assert judge(comps, prompts=["q"] * 4, answer=gold) == [1.0, 0.0, 1.0, 1.0]
    assert len(backend.asked) == 2 and "R:the sky is blue" in backend.asked[0]
    m = judge.summarize(judge.drain_metrics())
    assert (m["rule_decided"], m["judged"], m["calls"]) == (2.0, 2.0, 2.0)


def test_rules_fallback_with_a_judge_that_cannot_decide_stays_none():
    judge = judge_with(FakeBackend(reply="unsure"), rules=get_reward("accuracy"), parser="yes_no")
    assert judge(["<answer> 4 </answer>", "<answer> 4 </answer>"], prompts=["q", "q"],
                 answer=["4", "hello world"]) == [1.0, None]


def test_in_the_scorer_with_reward_sets(monkeypatch):
    backend = FakeBackend()
    monkeypatch.setattr("rewards.models.judge.LocalJudgeBackend", lambda *a, **k: backend)
    spec = {"accuracy": 1.0, "judge": {"weight": 0.5, "model": "m", "template": "Q:{question} A:{answer} R:{reference}"}}
    with RewardScorer(spec, num_workers=0, reward_sets={"math": ["accuracy"], "chat": ["judge"]}) as scorer:
        res = scorer.score(["<answer> 4 </answer>", "hello"],
                           {"prompts": ["2+2?", "Greet."], "answer": ["4", ""], "task": ["math", "chat"]})
    # row 0: accuracy 1.0, judge None; row 1: judge on "hello" (5 chars -> 0.5), weight 0.5 -> total 0.25
    assert res.per_reward["judge"] == [None, pytest.approx(0.5)] and res.totals == pytest.approx([1.0, 0.25])
    assert backend.asked == [f"Q:Greet. A:hello R:{NO_REFERENCE}"]
    assert res.metrics["rewards/judge/calls"] == 1.0


@pytest.mark.parametrize("params, message", [
    ({}, "parameter 'model' .* or 'url' .* is required"),
    ({"url": "ftp://x"}, "url='ftp://x' must start with http:// or https://"),
    ({"model": "m", "engine": "sglang"}, "engine='sglang' is not one of: hf, vllm"),
    ({"model": "m", "parser": "stars"}, "parser='stars' is not one of: score, yes_no"),
    ({"model": "m", "mode": "last"}, "mode='last' is not one of"),
    ({"model": "m", "template": "no answer here"}, r"template must contain \{answer\}"),
    ({"model": "m", "max_score": 0}, "max_score must be an integer > 0"),
    ({"model": "m", "retries": -1}, "retries must be an integer >= 0"),
    ({"model": "m", "timeout_s": 0}, "timeout_s must be a number > 0"),
    ({"model": "m", "cache_size": 1.5}, "cache_size must be an integer >= 0"),
    ({"model": "m", "rules": "acuracy"}, "rules: unknown reward 'acuracy'"),
    ({"model": "m", "rules": "judge"}, "rules must name a rule reward"),
    ({"model": "m", "offload": "yes"}, "offload must be true or false"),
    ({"model": "m", "temperature": 0.7}, "unknown parameter 'temperature'"),
])
def test_bad_parameters_are_one_line(params, message):
    with pytest.raises(ValueError, match=message) as e:
        get_reward("judge", **params)
    assert "\n" not in str(e.value)


def test_local_engine_not_registered_is_one_line(monkeypatch):
    monkeypatch.setattr("rewards.models.judge.JUDGE_ENGINES", {})
    judge = get_reward("judge", model="m")
    with pytest.raises(ValueError, match=r"^judge engine 'hf' is provided by the project's rollout engines"):
        judge.warmup()


@pytest.mark.parametrize("judge_if, expected, asked", [
    # accuracy: 1.0 ("4" = 4), 0.0 ("four": a word, not 4 to the rules), None (gold "hello world" does not parse)
    ("none", [1.0, 0.0, 1.0], ["4"]),                          # only the None row: the judge says yes
    ("none_or_zero", [1.0, 1.0, 1.0], ["four", "4"]),          # the 0.0 row gets a second opinion too
])
def test_judge_if_chooses_the_rows_the_rules_hand_over(judge_if, expected, asked):
    backend = FakeBackend(reply="Verdict: yes")
    judge = Judge(backend, "Q:{question} A:{answer} R:{reference}", "yes_no", 10, "after_think", ("</think>",),
                  "answer", 16, get_reward("accuracy"), judge_if)
    comps = ["<answer> 4 </answer>", "<answer> four </answer>", "<answer> 4 </answer>"]
    assert judge(comps, prompts=["q"] * 3, answer=["4", "4", "hello world"]) == expected
    assert [p.split("<answer> ")[1].split(" ")[0] for p in backend.asked] == asked


def test_judge_if_is_checked():
    with pytest.raises(ValueError, match="judge_if='always' is not one of: none, none_or_zero"):
        get_reward("judge", model="m", rules="accuracy", judge_if="always")
