"""Classification metrics for emotion recognition; numpy only.

WAR (weighted average recall) is plain accuracy; UAR (unweighted average recall) is the mean of
per-class recalls, the field's metric for imbalanced emotion data.
"""
from __future__ import annotations

import numpy as np


def confusion_matrix(y_true, y_pred, num_classes: int) -> np.ndarray:
    """Rows are true classes, columns predicted ones."""
    y_true = np.asarray(y_true, dtype=np.int64)
    y_pred = np.asarray(y_pred, dtype=np.int64)
    cm = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(cm, (y_true, y_pred), 1)
    return cm


def accuracy(cm: np.ndarray) -> float:
    total = cm.sum()
    return float(np.trace(cm) / total) if total else 0.0


def uar(cm: np.ndarray) -> float:
    """Balanced accuracy over the classes that occur in ``y_true``."""
    support = cm.sum(axis=1)
    present = support > 0
    if not present.any():
        return 0.0
    recalls = np.diag(cm)[present] / support[present]
    return float(recalls.mean())


def macro_f1(cm: np.ndarray) -> float:
    """Mean F1 over classes present in truth or predictions (sklearn's ``average='macro'``)."""
    tp = np.diag(cm).astype(float)
    support = cm.sum(axis=1)
    predicted = cm.sum(axis=0)
    present = (support + predicted) > 0
    if not present.any():
        return 0.0
    denom = support + predicted
    f1 = np.divide(2 * tp, denom, out=np.zeros_like(tp), where=denom > 0)
    return float(f1[present].mean())


def classification_metrics(y_true, y_pred, num_classes: int) -> dict:
    cm = confusion_matrix(y_true, y_pred, num_classes)
    return {
        "accuracy": accuracy(cm),
        "uar": uar(cm),
        "macro_f1": macro_f1(cm),
        "confusion": cm.tolist(),
    }
