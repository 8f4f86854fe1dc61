"""Subject validation and NATS wildcard matching, checked against a plain reference implementation."""

from __future__ import annotations

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from aitrading.common.bus.subjects import subject_matches, token, validate_pattern, validate_subject


def reference_matches(pattern: list[str], subject: list[str]) -> bool:
    """NATS semantics, token by token: `*` is one token, a final `>` is one or more."""
    if not pattern:
        return not subject
    head, *rest = pattern
    if head == ">":
        return len(subject) >= 1
    if not subject:
        return False
    return head in ("*", subject[0]) and reference_matches(rest, subject[1:])


# A tiny alphabet makes equal tokens, and therefore matches, common.
tokens = st.sampled_from(["a", "b", "EURUSD", "x-1", "q_2"])
subjects = st.lists(tokens, min_size=1, max_size=6)
patterns = st.builds(
    lambda body, tail: body + tail,
    st.lists(st.one_of(tokens, st.just("*")), min_size=0, max_size=6),
    st.sampled_from([[], [">"]]),
).filter(bool)


@given(patterns, subjects)
@example([">"], ["a"])
@example(["a", ">"], ["a"])
@example(["*"], ["a", "b"])
@example(["a", "*", ">"], ["a", "b", "c", "d"])
def test_subject_matches_agrees_with_the_reference(pattern: list[str], subject: list[str]) -> None:
    assert subject_matches(".".join(pattern), ".".join(subject)) == reference_matches(pattern, subject)


@given(subjects)
def test_a_subject_matches_itself_and_its_full_wildcard(subject: list[str]) -> None:
    s = ".".join(subject)
    assert subject_matches(s, s)
    assert subject_matches(">", s)
    assert subject_matches(".".join("*" for _ in subject), s)


@given(subjects)
def test_generated_subjects_are_valid_subjects_and_patterns(subject: list[str]) -> None:
    s = ".".join(subject)
    assert validate_subject(s) == s
    assert validate_pattern(s) == s


@given(patterns)
def test_generated_patterns_are_valid_patterns_but_not_subjects(pattern: list[str]) -> None:
    p = ".".join(pattern)
    assert validate_pattern(p) == p
    if "*" in pattern or ">" in pattern:
        with pytest.raises(ValueError, match="invalid subject"):
            validate_subject(p)


@given(subjects, subjects)
def test_greater_than_anywhere_but_last_is_an_invalid_pattern(before: list[str], after: list[str]) -> None:
    with pytest.raises(ValueError, match="'>' must be the last token"):
        validate_pattern(".".join([*before, ">", *after]))


@pytest.mark.parametrize("subject", ["", ".", "a.", ".a", "a..b", "a b", "a.*", "a.>", "a\tb", "ä"])
def test_malformed_subjects_are_refused(subject: str) -> None:
    with pytest.raises(ValueError, match="invalid subject"):
        validate_subject(subject)


@given(st.text(max_size=20))
def test_token_always_yields_one_valid_stable_token(value: str) -> None:
    t = token(value)
    assert validate_subject(t) == t
    assert "." not in t
    assert token(t) == t


@pytest.mark.parametrize(
    ("raw", "expected"), [("EURUSD", "EURUSD"), ("EURUSD.r", "EURUSD_r"), ("US30#", "US30_")]
)
def test_token_keeps_broker_symbols_recognisable(raw: str, expected: str) -> None:
    assert token(raw) == expected
