"""Benchmarking: one latency harness for every backend, accuracy, reports."""
