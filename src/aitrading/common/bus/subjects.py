"""Subject names and wildcard matching with NATS semantics.

Subjects are dot-separated tokens. In a pattern `*` matches exactly one token and `>` (last token only)
matches one or more tokens.
"""

from __future__ import annotations

import re
from functools import lru_cache

__all__ = ["subject_matches", "token", "validate_pattern", "validate_subject"]

_TOKEN = re.compile(r"^[A-Za-z0-9_\-:@+=]+$")
_UNSAFE = re.compile(r"[^A-Za-z0-9_\-]")


def token(value: str) -> str:
    """Make `value` safe as one subject token (symbols such as `EURUSD.r` or `US30#` keep a stable form)."""
    return _UNSAFE.sub("_", value) or "_"


def validate_subject(subject: str) -> str:
    """Return `subject` if it is a concrete subject (no wildcards), else raise `ValueError`."""
    parts = subject.split(".")
    if not subject or any(not _TOKEN.match(p) for p in parts):
        raise ValueError(f"invalid subject {subject!r}: tokens must be non-empty and free of wildcards")
    return subject


def validate_pattern(pattern: str) -> str:
    """Return `pattern` if it is a valid subscription pattern, else raise `ValueError`."""
    parts = pattern.split(".")
    for i, p in enumerate(parts):
        if p == ">" and i != len(parts) - 1:
            raise ValueError(f"invalid pattern {pattern!r}: '>' must be the last token")
        if p not in ("*", ">") and not _TOKEN.match(p):
            raise ValueError(f"invalid pattern {pattern!r}: bad token {p!r}")
    return pattern


@lru_cache(maxsize=65536)
def subject_matches(pattern: str, subject: str) -> bool:
    """Tell whether `subject` matches `pattern` under NATS wildcard rules."""
    if pattern == subject:
        return True
    p_parts = pattern.split(".")
    s_parts = subject.split(".")
    for i, p in enumerate(p_parts):
        if p == ">":
            return len(s_parts) > i
        if i >= len(s_parts):
            return False
        if p != "*" and p != s_parts[i]:
            return False
    return len(p_parts) == len(s_parts)
