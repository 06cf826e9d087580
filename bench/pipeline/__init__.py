"""Webhook pipeline benchmark (`python -m bench.pipeline`): workloads, load, processes, report."""
