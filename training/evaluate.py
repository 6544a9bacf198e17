"""Spam-class metrics at a decision threshold.

>>> m = spam_metrics(np.array([1, 1, 0, 0]), np.array([0.9, 0.4, 0.6, 0.1]), threshold=0.5)
>>> m["n"], m["precision"], m["recall"], m["false_positive_rate"], m["accuracy"]
(4, 0.5, 0.5, 0.5, 0.5)
"""
from __future__ import annotations

from typing import Any

import numpy as np

METRIC_NAMES = ("n", "precision", "recall", "f1", "pr_auc", "accuracy", "false_positive_rate")


def spam_metrics(labels: np.ndarray, proba: np.ndarray, threshold: float) -> dict[str, Any]:
    """n, precision, recall, f1, pr_auc, accuracy and false_positive_rate (on normal) for the spam class."""
    from sklearn.metrics import average_precision_score

    labels = np.asarray(labels).astype(int)
    predicted = np.asarray(proba) >= threshold
    tp = int(np.sum(predicted & (labels == 1)))
    fp = int(np.sum(predicted & (labels == 0)))
    fn = int(np.sum(~predicted & (labels == 1)))
    tn = int(np.sum(~predicted & (labels == 0)))
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    both_classes = 0 < labels.sum() < len(labels)
    return {
        "n": int(len(labels)),
        "precision": round(precision, 4),
        "recall": round(recall, 4),
        "f1": round(f1, 4),
        "pr_auc": round(float(average_precision_score(labels, proba)), 4) if both_classes else None,
        "accuracy": round((tp + tn) / len(labels), 4) if len(labels) else 0.0,
        "false_positive_rate": round(fp / (fp + tn), 4) if fp + tn else 0.0,
        "confusion": {"tp": tp, "fp": fp, "fn": fn, "tn": tn},
    }


def classic_proba(baseline: Any, texts: list[str]) -> np.ndarray:
    return baseline.predict_proba(texts)[:, 1]
