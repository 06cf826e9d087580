"""Benchmarks that print figures; run them as modules (`python -m bench.pipeline`)."""
