import numpy as np
import pytest

from bench.training.metrics import classification_metrics, confusion_matrix


def test_confusion_matrix_rows_are_truth():
    cm = confusion_matrix([0, 0, 1, 2], [0, 1, 1, 1], 3)
    assert cm.tolist() == [[1, 1, 0], [0, 1, 0], [0, 1, 0]]


def test_metrics_against_hand_computed_values():
    # truth: 4x class0, 2x class1, 1x class2; predictions below
    y_true = [0, 0, 0, 0, 1, 1, 2]
    y_pred = [0, 0, 0, 1, 1, 0, 0]
    m = classification_metrics(y_true, y_pred, 3)
    assert m["accuracy"] == pytest.approx(4 / 7)
    # recalls: 3/4, 1/2, 0/1 -> UAR = 1.25/3
    assert m["uar"] == pytest.approx((0.75 + 0.5 + 0.0) / 3)
    # F1: class0 p=3/5 r=3/4 -> 2/3; class1 p=1/2 r=1/2 -> 1/2; class2 -> 0
    assert m["macro_f1"] == pytest.approx((2 / 3 + 0.5 + 0.0) / 3)


def test_metrics_match_sklearn_on_random_labels():
    from sklearn.metrics import balanced_accuracy_score, f1_score

    rng = np.random.default_rng(0)
    y_true = rng.integers(0, 7, 500)
    y_pred = np.where(rng.random(500) < 0.4, y_true, rng.integers(0, 7, 500))
    m = classification_metrics(y_true, y_pred, 7)
    assert m["uar"] == pytest.approx(balanced_accuracy_score(y_true, y_pred))
    assert m["macro_f1"] == pytest.approx(f1_score(y_true, y_pred, average="macro"))


def test_uar_ignores_classes_absent_from_truth():
    m = classification_metrics([0, 0, 1], [0, 2, 1], 3)
    assert m["uar"] == pytest.approx((0.5 + 1.0) / 2)
