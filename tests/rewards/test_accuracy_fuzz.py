"""Fuzzing `accuracy` (hypothesis, derandomized: the same examples on every run, no example database):

- random strings of LaTeX pieces, numbers, tags and braces never make it raise, always come back within the
  per-item timeout, and give 1.0, 0.0 or None;
- plain numbers (integers with any thousands separator, decimals, fractions) are judged exactly and symmetrically:
  the reward of answer a against gold b is 1.0 iff a and b are the same number, and equals that of b against a.
"""
from __future__ import annotations

import time
from fractions import Fraction

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rewards import get_reward

TIMEOUT_S = 0.5
ACC = get_reward("accuracy", timeout_s=TIMEOUT_S)
FUZZ = settings(max_examples=150, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.too_slow])

PIECES = ["\\boxed{", "\\fbox{", "{", "}", "\\{", "\\}", "\\frac{", "\\dfrac", "\\sqrt{", "^", "_", "-", "+", "*", "/",
          "=", ",", ".", " ", "\\,", "{,}", ",\\!", "\\!", "\\quad", "\\text{and}", " and ", " or ", "$", "$$", "\\(",
          "\\)", "\\[", "\\]", "(", ")", "[", "]", "\\infty", "\\pi", "x", "y", "\\%", "%", "\\begin{pmatrix}",
          "\\end{pmatrix}", "\\begin{cases}", "\\end{cases}", "\\\\", "&", "<answer>", "</answer>", "<think>",
          "</think>", "The final answer is ", "####", "\\left(", "\\right)", "\u2009", "\u00a0", "\uff15", "\u2212"]
latex = st.lists(st.one_of(st.sampled_from(PIECES), st.text(alphabet="0123456789", min_size=1, max_size=5)),
                 max_size=24).map("".join)


@FUZZ
@given(completion=latex, gold=latex)
def test_random_latex_never_raises_and_returns_in_time(completion, gold):
    start = time.perf_counter()
    out = ACC([completion], answer=[gold])
    assert len(out) == 1 and out[0] in (0.0, 1.0, None)
    assert time.perf_counter() - start < TIMEOUT_S + 1.0  # the timeout, plus a gold parse that is not timed apart


SEPARATORS = [",", " ", "\\,", "{,}", ",\\!", "\u2009"]


@st.composite
def numbers(draw) -> tuple[Fraction, str]:
    """(value, text): an integer with or without a thousands separator, a decimal, or a fraction."""
    kind = draw(st.sampled_from(["int", "grouped", "decimal", "frac", "slash"]))
    if kind in ("int", "grouped"):
        n = draw(st.integers(-10 ** 7, 10 ** 7) if kind == "int" else st.integers(1000, 10 ** 9))
        text = str(n)
        if kind == "grouped":
            sep, digits = draw(st.sampled_from(SEPARATORS)), str(n)
            head = len(digits) % 3 or 3
            text = sep.join([digits[:head]] + [digits[i:i + 3] for i in range(head, len(digits), 3)])
            if draw(st.booleans()):
                n, text = -n, "-" + text
        return Fraction(n), text
    if kind == "decimal":
        units, places = draw(st.integers(-10 ** 4, 10 ** 4)), draw(st.integers(1, 3))
        value = Fraction(units, 10 ** places)
        return value, f"{float(value):.{places}f}"
    p, q = draw(st.integers(-99, 99)), draw(st.integers(1, 99))
    sign = "-" if p < 0 else ""
    text = f"{sign}\\frac{{{abs(p)}}}{{{q}}}" if kind == "frac" else f"{p}/{q}"
    return Fraction(p, q), text


@st.composite
def number_pairs(draw) -> tuple[tuple[Fraction, str], tuple[Fraction, str]]:
    """Two numbers; half of the time the same value written another way (else equal values would be rare)."""
    a = draw(numbers())
    if draw(st.booleans()):
        return a, draw(numbers())
    value = a[0]
    forms = [f"{value.numerator}/{value.denominator}", f"\\frac{{{value.numerator}}}{{{value.denominator}}}"]
    if value.denominator == 1:
        forms.append(str(value.numerator))
    if value.denominator in (1, 2, 4, 5, 8, 10, 20, 25, 50, 100, 1000):
        forms.append(f"{float(value):.3f}")
    return a, (value, draw(st.sampled_from(forms)).replace("\\frac{-", "-\\frac{"))


@FUZZ
@given(pair=number_pairs())
def test_plain_numbers_are_exact_and_symmetric(pair):
    (va, a), (vb, b) = pair
    ab = ACC([f"<answer>{a}</answer>"], answer=[b])
    ba = ACC([f"<answer>{b}</answer>"], answer=[a])
    assert ab == ba == [1.0 if va == vb else 0.0], (a, b)
