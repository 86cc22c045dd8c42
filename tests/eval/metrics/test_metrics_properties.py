"""Invariants of the answer normalisations and matchers (hypothesis)."""

from __future__ import annotations

import string

from hypothesis import given, settings
from hypothesis import strategies as st

from eval.metrics import (
    multi_answer_em,
    normalize_answer,
    numerical_correct,
    parse_numerical,
    preprocess_answer,
    recall_at_k,
    single_answer_em,
)

FAST = settings(max_examples=150, deadline=None)  # local, not a global profile

ASCII_TEXT = st.text(alphabet=string.ascii_letters + string.digits + " \t\n", max_size=40)
ANY_TEXT = st.text(max_size=40)
PUNCT = st.text(alphabet=string.punctuation, max_size=5)
SPACE = st.text(alphabet=" \t\n", max_size=3)


def insert_punctuation(text: str, marks: list[str]) -> str:
    out = []
    for i, ch in enumerate(text):
        out.append(marks[i % len(marks)] if marks else "")
        out.append(ch)
    return "".join(out)


@FAST
@given(ANY_TEXT)
def test_normalize_answer_idempotent(text):
    once = normalize_answer(text)
    assert normalize_answer(once) == once


@FAST
@given(ANY_TEXT)
def test_preprocess_answer_idempotent(text):
    once = preprocess_answer(text)
    assert preprocess_answer(once) == once


@FAST
@given(ASCII_TEXT, SPACE, SPACE)
def test_case_and_surrounding_whitespace_do_not_matter(text, left, right):
    for fn in (normalize_answer, preprocess_answer):
        assert fn(left + text.upper() + right) == fn(text.lower())


@FAST
@given(ASCII_TEXT, st.lists(PUNCT, max_size=4))
def test_punctuation_does_not_matter(text, marks):
    # '<' could spell the '<extra_id_0> ' prefix, which E-VQA handles before punctuation
    noisy = insert_punctuation(text, [m.replace("<", "") for m in marks])
    assert normalize_answer(noisy) == normalize_answer(text)
    assert preprocess_answer(noisy) == preprocess_answer(text)


@FAST
@given(ANY_TEXT, ANY_TEXT)
def test_single_answer_em_is_symmetric(a, b):
    if preprocess_answer(a) and preprocess_answer(b):
        assert single_answer_em(a, b) == single_answer_em(b, a)
        assert single_answer_em(a, a)


@FAST
@given(st.lists(st.sampled_from(["red", "blue", "green", "Blue", "the red", "x"]),
                min_size=1, max_size=6), st.randoms())
def test_multi_answer_ignores_order_and_repeats(items, rnd):
    reference = "&&".join(items)
    shuffled = list(items) * 2
    rnd.shuffle(shuffled)
    assert multi_answer_em(reference, ", ".join(shuffled))
    assert multi_answer_em(reference, ", ".join(items)) == multi_answer_em(
        reference, " and ".join(reversed(items)))


@FAST
@given(st.integers(0, 10**6), st.integers(0, 10**6))
def test_parse_numerical_ranges(a, b):
    lo, hi = min(a, b), max(a, b)
    assert parse_numerical(f"{lo}-{hi}") == [float(lo), float(hi)]
    assert parse_numerical(f"{hi:,} m") == float(hi)
    if lo < hi:
        assert parse_numerical(f"{hi}-{lo}") == float(hi)


@FAST
@given(st.floats(-1e6, 1e6), st.floats(-1e6, 1e6), st.floats(-1e6, 1e6))
def test_numerical_value_and_degenerate_range_agree(x, a, b):
    lo, hi = min(a, b), max(a, b)
    assert numerical_correct(x, (lo, hi)) == (lo <= x <= hi)
    if lo <= x <= hi:
        assert numerical_correct([x, x], (lo, hi))


@FAST
@given(st.lists(st.integers(0, 20), max_size=15, unique=True), st.integers(0, 20))
def test_recall_is_monotone_in_k(ranked, positive):
    values = recall_at_k(ranked, [positive], ks=range(1, 17))
    assert all(values[k] <= values[k + 1] for k in range(1, 16))
    assert values[16] == (1.0 if positive in ranked else 0.0)
