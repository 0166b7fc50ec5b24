"""The programs of a run: training, cross-validation, synthesis and the checks before a run.

They are the only modules (with `fergan.benchmarks`) that look a method up in `fergan.methods`.
"""
