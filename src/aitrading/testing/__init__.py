"""Test kit: rigs that run real platform parts for benchmarks and acceptance tests."""
