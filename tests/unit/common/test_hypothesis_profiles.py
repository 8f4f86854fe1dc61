"""The property tests' settings (tests/conftest.py): no deadline; derandomized under CI."""

from __future__ import annotations

import os

from hypothesis import settings


def test_property_tests_have_no_deadline_and_ci_runs_fixed_examples() -> None:
    in_ci = os.environ.get("CI", "").lower() in ("1", "true", "yes")
    profile = os.environ.get("HYPOTHESIS_PROFILE", "ci" if in_ci else "dev")
    assert settings.default.deadline is None
    assert settings.default.derandomize is (profile == "ci")
    assert settings.default == settings.get_profile(profile)
