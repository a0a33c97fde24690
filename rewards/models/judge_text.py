"""Pure helpers of the `judge` reward (LLM-as-judge): the prompt a judge reads and the parser of its verdict. No torch,
no network.

    >>> p = render_prompt(DEFAULT_TEMPLATE, question="What is 2+3?", answer="5", reference="5")
    >>> p.splitlines()[2], p.splitlines()[5], p.splitlines()[8]
    ('What is 2+3?', '5', '5')
    >>> parse_verdict("The answer matches.\\nScore: 8", "score", 10)      # 8 out of 10
    0.8
    >>> parse_verdict("Verdict: yes", "yes_no", 10)
    1.0
    >>> parse_verdict("I cannot tell.", "score", 10) is None              # unparseable: None, counted by the judge
    True
"""
from __future__ import annotations

import hashlib
import re
from typing import Any

PARSERS = ("score", "yes_no")
PLACEHOLDERS = ("{question}", "{answer}", "{reference}")
NO_REFERENCE = "(none given)"

DEFAULT_TEMPLATE = """You are grading the answer to a question.
Question:
{question}

Answer to grade:
{answer}

Reference answer:
{reference}

Is the answer correct (it agrees with the reference answer when one is given) and helpful? Reason briefly, then end \
with one line "Score: N", where N is an integer from 0 (wrong or unhelpful) to {max_score} (correct and helpful)."""

YES_NO_TEMPLATE = """You are checking the answer to a question.
Question:
{question}

Answer to check:
{answer}

Reference answer:
{reference}

Does the answer state the same final result as the reference answer? Reason briefly, then end with one line \
"Verdict: yes" or "Verdict: no"."""


def check_template(template: Any) -> str:
    """The template, or a one-line ValueError: it must be a string holding `{answer}` (a judge that never sees the
    answer judges nothing); `{question}` and `{reference}` are optional.

    >>> check_template("Rate: {question}")
    Traceback (most recent call last):
    ValueError: template must contain {answer} (placeholders: {question}, {answer}, {reference}, {max_score})
    """
    if not isinstance(template, str) or "{answer}" not in template:
        raise ValueError("template must contain {answer} (placeholders: " + ", ".join(PLACEHOLDERS)
                         + ", {max_score})")
    return template


def question_text(prompt: Any) -> str:
    """The question a judge reads: a string prompt as is; a chat prompt's last user turn (a system prompt is the
    policy's instructions, not the question).

    >>> question_text([{"role": "system", "content": "Think first."}, {"role": "user", "content": "2+3?"}])
    '2+3?'
    """
    if isinstance(prompt, (list, tuple)):
        users = [m.get("content", "") for m in prompt if isinstance(m, dict) and m.get("role") == "user"]
        texts = users or [m.get("content", "") for m in prompt if isinstance(m, dict)]
        return str(texts[-1]) if texts else ""
    return "" if prompt is None else str(prompt)


def render_prompt(template: str, question: str, answer: str, reference: str | None, max_score: int = 10) -> str:
    """The judge's prompt: each placeholder replaced once, left to right, by plain substitution (never str.format:
    a completion holding braces or `{reference}` cannot inject into the template). A missing reference reads
    NO_REFERENCE.

    >>> render_prompt("Q={question} A={answer} R={reference}", "x?", "{reference}", None)
    'Q=x? A={reference} R=(none given)'
    """
    values = {"{question}": question, "{answer}": answer,
              "{reference}": NO_REFERENCE if reference is None or str(reference).strip() == "" else str(reference),
              "{max_score}": str(max_score)}
    pattern = re.compile("|".join(re.escape(k) for k in values))
    return pattern.sub(lambda m: values[m.group(0)], template)


_SCORE = re.compile(r"score\s*[:=]\s*\**\s*([-+]?\d+(?:\.\d+)?)\s*(?:/\s*(\d+(?:\.\d+)?))?", re.IGNORECASE)
_VERDICT = re.compile(r"(?:verdict|answer|correct)\s*[:=]\s*\**\s*(yes|no|correct|incorrect|true|false)\b",
                      re.IGNORECASE)
_LAST_WORD = re.compile(r"\b(yes|no|correct|incorrect)\W*$", re.IGNORECASE)
_POSITIVE = {"yes", "correct", "true"}


def parse_verdict(text: str, parser: str, max_score: int = 10) -> float | None:
    """The judge's verdict in [0, 1], or None when the text holds none (counted as a parse failure by the judge).

    `score`: the LAST "Score: N" (or "Score: N/M"; bold markers allowed); N / max_score (N / M when the judge wrote
    its own scale); a score outside [0, scale] is None, not clipped (a judge that answers "Score: 12" out of 10 did
    not follow the template). `yes_no`: the last "Verdict: yes|no" (also correct/incorrect, true/false), else a
    final yes/no word; yes -> 1.0, no -> 0.0.

    >>> [parse_verdict(t, "score", 10) for t in ("Score: 7", "score = 3/4", "Score: 2 ... Score: 10", "Score: 11")]
    [0.7, 0.75, 1.0, None]
    """
    if not isinstance(text, str):
        return None
    if parser == "score":
        found = _SCORE.findall(text)
        if not found:
            return None
        value, scale = found[-1]
        top = float(scale) if scale else float(max_score)
        v = float(value)
        if top <= 0 or not 0 <= v <= top:
            return None
        return v / top
    if parser == "yes_no":
        found = _VERDICT.findall(text)
        word = found[-1] if found else None
        if word is None:
            last = _LAST_WORD.search(text.strip())
            word = last.group(1) if last else None
        return None if word is None else (1.0 if word.lower() in _POSITIVE else 0.0)
    raise ValueError(f"judge: parser={parser!r} is not one of: {', '.join(PARSERS)}")


def cache_key(*parts: str) -> str:
    """A fixed-size key for the judge's cache: the sha256 of its parts (the judge's identity and the rendered
    prompt, which holds question, answer and reference), separated so that ("ab", "c") != ("a", "bc").

    >>> cache_key("ab", "c") == cache_key("a", "bc"), len(cache_key("x"))
    (False, 64)
    """
    h = hashlib.sha256()
    for p in parts:
        h.update(len(p).to_bytes(8, "little"))
        h.update(p.encode("utf-8", errors="replace"))
    return h.hexdigest()


def summarize_judge(counts: dict[str, float]) -> dict[str, float]:
    """Step metrics of a judge from its summed counters: `calls` (model calls made), `cache_hits`,
    `parse_failures` (answers without a verdict: None), `timeouts`, `failed_calls` (no answer after the retries),
    `call_s` (seconds per call), and with a rule reward first (`rules:`), `rule_decided` / `judged` rows.

    >>> summarize_judge({"calls": 4.0, "seconds": 2.0, "cache_hits": 1.0})["call_s"]
    0.5
    """
    out = {k: float(counts.get(k, 0.0)) for k in ("calls", "cache_hits", "parse_failures", "timeouts",
                                                  "failed_calls")}
    for k in counts:  # rules-first counts, and the rule reward's own counters (`rules_<key>`)
        if k in ("rule_decided", "judged") or k.startswith("rules_"):
            out[k] = float(counts[k])
    out["call_s"] = counts.get("seconds", 0.0) / counts["calls"] if counts.get("calls") else 0.0
    return out
