"""Benchmarks (`python -m fergan.benchmarks.<name>`): the data-parallel training step."""
