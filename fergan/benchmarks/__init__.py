"""Benchmarks: input-pipeline throughput, run-to-run agreement, and an eager PyTorch reference."""
