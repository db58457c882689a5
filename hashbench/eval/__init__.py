"""Evaluation: the one place where retrieval metrics are computed."""

from hashbench.eval.retrieval import RetrievalResult, evaluate, mean_average_precision, record_metrics

__all__ = ["RetrievalResult", "evaluate", "mean_average_precision", "record_metrics"]
