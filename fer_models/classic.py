"""Classic scikit-learn heads on fixed voice features, registered as models of the zoo.

``sk_svm`` (linear or RBF SVM), ``sk_logreg`` (logistic regression) and ``sk_mlp`` (a small
multilayer perceptron) are models like the others: ``create_model("sk_svm", num_classes,
features="egemaps", kernel="rbf", C=1.0)``, with ``input_spec`` from
``voice_features.feature_spec(features, frames=, n_bins=, weights=, feature_set=, speaker_norm=)``.
They are not trained by epochs: bench's trial calls ``fit(features, labels)`` once on the training
split (``model.is_classic``). The estimator is ``Pipeline(StandardScaler, clf)``, so scaling is
fitted on the training split only.

2-D inputs (bins x frames: log-mel, MFCC, openSMILE low-level descriptors) are pooled to the mean
and standard deviation of every bin over time; SSL inputs (layers x dim, already pooled over time)
take one layer (``layer``) or the mean of all layers; 1-D inputs (functionals) are used as they are.

Probabilities: scikit-learn 1.9 deprecated ``SVC(probability=True)``; SVMs are wrapped in
``CalibratedClassifierCV(SVC(...), ensemble=False)`` (Platt scaling, as scikit-learn advises), which
skl2onnx converts. The fusion model's SVM head (``fusion.py``) uses the same ``make_estimator``.
"""
from __future__ import annotations

import math
import warnings

import numpy as np
import torch

from .base import FerModel
from .registry import register_model
from .spec import InputSpec
from .voice_features import kind_of

KERNELS = ("linear", "rbf")
CLASSIC_MODELS = ("sk_svm", "sk_logreg", "sk_mlp")
# Types a saved head may hold beyond skops' default-trusted scikit-learn/numpy types: what the
# estimators above contain after fitting. A file with any other type is refused unloaded.
ALLOWED_TYPES = (
    "sklearn.calibration._CalibratedClassifier",
    "sklearn.calibration._SigmoidCalibration",
    "sklearn.neural_network._stochastic_optimizers.AdamOptimizer",
)


HEAD_FILE = "head.skops"  # beside bench's checkpoint.pt


class UntrustedHeadError(ValueError):
    """A saved head holds a type outside ``ALLOWED_TYPES`` (or is not a skops file)."""


def load_head(path):
    """A fitted estimator from a skops file, loaded only when every type skops does not trust by
    default is in ``ALLOWED_TYPES``; otherwise nothing in the file is built."""
    import skops.io as sio

    try:
        untrusted = sio.get_untrusted_types(file=path)
    except Exception as exc:
        raise UntrustedHeadError(f"{str(path)!r} is not a readable skops file ({type(exc).__name__}: {exc})") \
            from None
    refused = [t for t in untrusted if t not in ALLOWED_TYPES]
    if refused:
        raise UntrustedHeadError(f"{str(path)!r} holds types fer-bench does not load ({', '.join(refused)}); only "
                                 f"files written by fer-bench's scikit-learn heads are accepted")
    return sio.load(path, trusted=untrusted)


class ModelConfigError(ValueError):
    """A model keyword argument has a value the model cannot take; the message names the key."""


def _positive(key: str, value) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ModelConfigError(f"model.{key} must be a number > 0, got {value!r}") from None
    if not math.isfinite(number) or number <= 0:
        raise ModelConfigError(f"model.{key} must be a number > 0, got {value!r}")
    return number


def _class_weight(value):
    if value in (None, "none", False):
        return None
    if value in ("balanced", True):
        return "balanced"
    raise ModelConfigError(f"model.class_weight must be 'balanced' or 'none', got {value!r}")


def check_kernel(key: str, kernel) -> str:
    if kernel not in KERNELS:
        raise ModelConfigError(f"model.{key} must be one of {', '.join(KERNELS)}, got {kernel!r}")
    return kernel


def _gamma(value):
    if value in ("scale", "auto"):
        return value
    return _positive("gamma", value)


def make_estimator(kind: str, *, kernel: str = "rbf", C: float = 1.0, gamma="scale", class_weight=None,
                   hidden: int = 128, alpha: float = 1e-4, max_iter: int = 500, seed: int = 0,
                   calibration_folds: int = 3, keys: dict | None = None):
    """An unfitted ``Pipeline(StandardScaler, clf)``; bad values raise ``ModelConfigError`` naming the
    key (``keys`` renames them, e.g. the fusion head's ``svm_kernel``/``svm_c``)."""
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler

    keys = keys or {}
    weight = _class_weight(class_weight)
    if kind == "svm":
        from sklearn.calibration import CalibratedClassifierCV
        from sklearn.svm import SVC

        svc = SVC(kernel=check_kernel(keys.get("kernel", "kernel"), kernel), C=_positive(keys.get("C", "C"), C),
                  gamma=_gamma(gamma), class_weight=weight)
        clf = CalibratedClassifierCV(svc, method="sigmoid", cv=calibration_folds, ensemble=False)
    elif kind == "logreg":
        from sklearn.linear_model import LogisticRegression

        clf = LogisticRegression(C=_positive("C", C), class_weight=weight, max_iter=max_iter)
    elif kind == "mlp":
        from sklearn.neural_network import MLPClassifier

        if int(hidden) < 1:
            raise ModelConfigError(f"model.hidden must be a whole number >= 1, got {hidden!r}")
        if float(alpha) < 0:
            raise ModelConfigError(f"model.alpha must be >= 0, got {alpha!r}")
        clf = MLPClassifier(hidden_layer_sizes=(int(hidden),), alpha=float(alpha), max_iter=max_iter,
                            random_state=seed)
    else:
        raise ModelConfigError(f"unknown classic head {kind!r}; known: svm, logreg, mlp")
    return Pipeline([("scale", StandardScaler()), ("clf", clf)])


def fit_estimator(estimator, x: np.ndarray, y: np.ndarray):
    """Fit, with the SVM's calibration folds capped by the rarest class (Platt scaling needs each
    class in every fold) and convergence chatter silenced (max_iter is the budget)."""
    from sklearn.exceptions import ConvergenceWarning

    clf = estimator.steps[-1][1]
    if hasattr(clf, "cv") and isinstance(clf.cv, int):
        rarest = int(np.bincount(y).astype(float)[np.unique(y)].min())
        if rarest < 2:
            raise ModelConfigError("an SVM head needs at least 2 training samples of every class for its "
                                   "probability calibration")
        clf.set_params(cv=min(clf.cv, rarest))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return estimator.fit(np.asarray(x, dtype=np.float32), np.asarray(y))


def probabilities(estimator, x: np.ndarray, num_classes: int) -> np.ndarray:
    """N x num_classes probabilities; a class absent from the training labels gets 0."""
    probs = np.zeros((len(x), num_classes), dtype=np.float64)
    probs[:, estimator.classes_.astype(int)] = estimator.predict_proba(np.asarray(x, dtype=np.float32))
    return probs


def input_spec_for(features: str, **options) -> InputSpec:
    """The voice representation's spec (``voice_features.feature_spec``); an unknown name or set
    is a ``ModelConfigError``."""
    from .voice_features import feature_spec

    try:
        return feature_spec(features, **options)
    except ModelConfigError:
        raise
    except ValueError as exc:
        raise ModelConfigError(f"model.features={features!r}: {exc}") from None


def pool(x: torch.Tensor, spec: InputSpec, layer: int | None = None) -> torch.Tensor:
    """One vector per sample (see the module docstring)."""
    if kind_of(spec).layers:  # B x layers x dim (speech-encoder layers): time is already pooled
        return x[:, layer] if layer is not None else x.mean(dim=1)
    if x.ndim == 4:  # B x 1 x bins x frames (log-mel)
        x = x.flatten(1, 2)
    if x.ndim == 2:
        return x
    return torch.cat([x.mean(dim=-1), x.std(dim=-1, unbiased=False)], dim=1)


class ClassicHead(FerModel):
    """A scikit-learn estimator behind the model contract: ``logits`` are log-probabilities, so
    argmax, cross-entropy and softmax give the estimator's own answers. No trainable parameters."""

    is_classic = True

    def __init__(self, num_classes: int, kind: str, features: str = "logmel", *, kernel: str = "rbf",
                 C: float = 1.0, gamma="scale", class_weight=None, hidden: int = 128, alpha: float = 1e-4,
                 max_iter: int = 500, layer: int | None = None, seed: int = 0, frames: int | None = None,
                 n_bins: int | None = None, weights: str | None = None, feature_set: str | None = None,
                 speaker_norm: bool = False, image_size: int | None = None):
        super().__init__()  # image_size: what bench passes every model; features have no image
        self.num_classes, self.kind, self.features, self.layer = num_classes, kind, features, layer
        hyper = dict(kernel=kernel, C=C, gamma=gamma, class_weight=class_weight, hidden=hidden, alpha=alpha,
                     max_iter=max_iter)
        self.hyper = hyper
        self.input_spec = input_spec_for(features, frames=frames, n_bins=n_bins, weights=weights,
                                         feature_set=feature_set, speaker_norm=speaker_norm)
        if layer is not None and kind_of(self.input_spec).layers:
            depth = self.input_spec.input_size[0]
            if not -depth <= int(layer) < depth:
                raise ModelConfigError(f"model.layer must be in [0, {depth - 1}] for {features}, got {layer!r}")
        self.estimator = make_estimator(kind, seed=seed, **hyper)  # validates the kwargs now, not after data loads
        self.fitted = False
        with torch.no_grad():
            self.num_features = int(self.pool(torch.zeros(1, *self.input_spec.input_size)).shape[1])

    def pool(self, x: torch.Tensor) -> torch.Tensor:
        return pool(x, self.input_spec, self.layer)

    def fit(self, x: np.ndarray, y: np.ndarray) -> ClassicHead:
        fit_estimator(self.estimator, x, y)
        self.fitted = True
        return self

    def set_estimator(self, estimator) -> ClassicHead:
        """Attach a fitted estimator (one loaded from a checkpoint's ``head.skops``)."""
        self.estimator, self.fitted = estimator, True
        return self

    def forward_features(self, x) -> torch.Tensor:
        return self.pool(x.float())

    def forward_head(self, features: torch.Tensor) -> torch.Tensor:
        if not self.fitted:
            raise RuntimeError(f"{self.kind} head used before fit()")
        probs = probabilities(self.estimator, features.detach().cpu().numpy(), self.num_classes)
        return torch.from_numpy(probs).to(features.device, torch.float32).clamp_min(1e-12).log()


@register_model(modality="voice")
def sk_svm(num_classes: int, **kwargs) -> ClassicHead:
    """scikit-learn SVM (kernel linear|rbf, C, gamma) on pooled voice features, Platt-calibrated."""
    return ClassicHead(num_classes, "svm", **kwargs)


@register_model(modality="voice")
def sk_logreg(num_classes: int, **kwargs) -> ClassicHead:
    """scikit-learn logistic regression (C, class_weight) on pooled voice features."""
    return ClassicHead(num_classes, "logreg", **kwargs)


@register_model(modality="voice")
def sk_mlp(num_classes: int, **kwargs) -> ClassicHead:
    """scikit-learn MLP (one hidden layer: hidden, alpha) on pooled voice features."""
    return ClassicHead(num_classes, "mlp", **kwargs)
