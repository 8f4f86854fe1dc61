"""Benchmarks: they print figures and ratios and never pass or fail on wall-clock time."""
