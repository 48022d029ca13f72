"""Benchmarks of issue 6 (not tests: pytest never collects this package). See the README's Performance section."""
