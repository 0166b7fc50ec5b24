"""Evaluation metrics and figures."""
