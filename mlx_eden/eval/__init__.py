"""Evaluation of a trained run: greedy generation on a split, and the metrics users ask for."""
