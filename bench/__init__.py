"""The benchmark (not tests: pytest never collects this package). See docs/performance.md."""
