"""The "frozen features -> scikit-learn head" stage of a trial, and clip thresholds chosen on validation.

- A classic-head trial (``sk_svm``, ``sk_logreg``, ``sk_mlp``; ``fer_models.classic``) is fitted
  once: pooled features of the training split -> ``Pipeline(StandardScaler, clf)``, then ONE report
  of its validation metrics (``epoch: 1``), so ASHA and selection treat it as a 1-epoch trial;
  ``train.max_epochs`` does not apply. Its checkpoint is ``checkpoint.pt`` (config, no weights) plus
  the estimator as ``head.skops``.
- The fusion model's ``head: svm``: after every epoch the network's fused features of the training
  split (no augmentation) fit the SVM, and the epoch's validation metrics are the SVM's; the
  checkpoint keeps that SVM as ``head.skops``.
- Where the validation split holds several samples of one clip (``Sample.clip_id``: CK+'s last
  frames of a sequence), or a voice model reads windows of frames (``predict`` cuts an utterance
  into half-overlapping windows; validation utterances are cut the same way), the
  ``aggregate_clips`` threshold that gives the best clip-level UAR is stored as ``clip_threshold``
  in the checkpoint's extra; ``fer-bench predict`` uses it.

``trainable.run_trial`` calls into here; nothing here imports Ray.
"""
from __future__ import annotations

import math
import tempfile
import time
from collections import defaultdict
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader

from bench.data import create_dataset, load_splits
from bench.data.transforms import fitted_state, voice_window_starts  # noqa: F401  (voice_window_starts: also here)
from bench.errors import UserError
from bench.training.checkpoint import save_checkpoint, save_estimator
from bench.training.config import TrialConfig
from bench.training.engine import evaluate, latency_ms, predict
from bench.training.metrics import classification_metrics
from bench.training.tasks import create_task

# candidate clip thresholds: 0 (every frame counts) up to 0.9 of the top class probability
CLIP_THRESHOLDS = tuple(round(t, 2) for t in np.arange(0.0, 0.951, 0.05))


def is_classic(cfg: TrialConfig) -> bool:
    from fer_models.classic import CLASSIC_MODELS

    return cfg.model.name in CLASSIC_MODELS


def _loader(dataset, batch_size: int = 256) -> DataLoader:
    # own generator: a DataLoader otherwise draws its seed from the global RNG (see trainable)
    return DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=0,
                      generator=torch.Generator().manual_seed(0))


def estimator_size(estimator) -> int:
    """Numbers a fitted estimator holds (coefficients, support vectors, weights): its "params"."""
    seen, total = set(), 0

    def walk(obj, depth=0):
        nonlocal total
        if id(obj) in seen or depth > 12:
            return
        seen.add(id(obj))
        if isinstance(obj, np.ndarray):
            total += int(obj.size) if obj.dtype.kind in "fiu" else 0
        elif isinstance(obj, (list, tuple)):
            for item in obj:
                walk(item, depth + 1)
        elif hasattr(obj, "__dict__") and type(obj).__module__.startswith("sklearn"):
            for key, value in vars(obj).items():
                if key.endswith("_") or key in ("steps", "estimator", "calibrators"):
                    walk(value, depth + 1)

    walk(estimator)
    return total


def run_classic_trial(cfg: TrialConfig, config: dict, *, cache_dir: Path, report, data_root: str | None) -> None:
    """Fit the classic head once on the training split and report its validation metrics."""
    from bench.training.build import build_model, num_classes
    from fer_models import ModelConfigError

    t0 = time.perf_counter()
    if "seed" not in cfg.model.kwargs:  # the MLP's initialisation follows the trial's seed (benchmark seeds)
        cfg = replace(cfg, model=replace(cfg.model, kwargs={**cfg.model.kwargs, "seed": cfg.train.seed}))
    model = build_model(cfg, num_classes(cfg.data.dataset))
    common = dict(cache_dir=Path(cache_dir), data_root=data_root or cfg.data.data_root,
                  image_size=cfg.data.image_size)
    train_set = create_dataset(cfg.data.dataset, "train", cfg.data.fold, model.input_spec, augment=False,
                               refit=cfg.data.refit, inner=cfg.data.inner(), **common)
    val_set = create_dataset(cfg.data.dataset, "val", cfg.data.fold, model.input_spec, inner=cfg.data.inner(),
                             **common)
    train_loader, val_loader = _loader(train_set), _loader(val_set)
    x = torch.cat([model.forward_features(b) for b, _ in train_loader]).numpy()
    y = train_set.labels.numpy()
    fit_start = time.perf_counter()
    try:
        model.fit(x, y)
    except ModelConfigError as exc:
        raise UserError(str(exc)) from None
    fit_s = time.perf_counter() - fit_start
    task = create_task(cfg.task.name)
    train = evaluate(model, train_loader, task)
    val = evaluate(model, val_loader, task)
    extra = {"val": {k: val[k] for k in ("accuracy", "uar", "macro_f1")}}
    clips = validation_clips(cfg, Path(cache_dir), data_root, val_loader, model.input_spec, train_set)
    extra.update(clips.tune(model) if clips is not None else {})
    extra["preprocessing"] = fitted_state(train_set)  # predict reads it: no dataset needed there
    metrics = {
        "epoch": 1,
        "train/loss": train["loss"],
        "train/samples_per_s": len(y) / fit_s if fit_s > 0 else math.inf,
        "val/loss": val["loss"],
        "val/accuracy": val["accuracy"],
        "val/uar": val["uar"],
        "val/macro_f1": val["macro_f1"],
        **({"val/clip_uar": extra["val_clip_uar"]} if "val_clip_uar" in extra else {}),
        "params": estimator_size(model.estimator),
        "latency_ms": latency_ms(model, val_set.inputs),
        "epoch_s": time.perf_counter() - t0,
    }
    with tempfile.TemporaryDirectory(prefix="fer-ckpt-") as tmp:
        save_checkpoint(tmp, model=model, epoch=0, config=config, extra=extra)
        save_estimator(tmp, model.estimator)
        report(metrics, Path(tmp))


def trial_seconds(config: dict, *, cache_dir: Path, data_root: str | None) -> float:
    """Wall time of one whole classic-head trial here (what a sweep's time estimate needs: the trial
    is its one "epoch"); its report is discarded."""
    start = time.perf_counter()
    run_classic_trial(TrialConfig.from_flat(config), config, cache_dir=Path(cache_dir), report=lambda m, d: None,
                      data_root=data_root)
    return time.perf_counter() - start


def fit_fusion_svm(model, train_set, val_loader, task, *, device, seed: int = 0):
    """Fit ``model.head: svm`` on the network's fused features of the (unaugmented) training split;
    returns (svm, model-with-svm, its validation metrics)."""
    from fer_models import ModelConfigError
    from fer_models.fusion import SVMHeadModel, fit_svm_head

    augment = getattr(train_set, "augment", False)
    train_set.augment = False
    try:
        _, y, features = predict(model, _loader(train_set), device=device)
    finally:
        train_set.augment = augment
        model.train()  # predict() left it in eval mode; the caller's next epoch trains it
    try:
        svm = fit_svm_head(features, y, model.svm_kernel, model.svm_c, seed=seed)
    except ModelConfigError as exc:
        raise UserError(str(exc)) from None
    head = SVMHeadModel(model, svm, val_loader.dataset.num_classes)
    val = evaluate(head, val_loader, task, device=device)
    return svm, head, val


# ---- clip thresholds ----------------------------------------------------------------------

def val_clip_ids(cfg: TrialConfig, cache_dir: Path, data_root: str | None, val_set) -> list[str] | None:
    """The validation samples' clip ids when some clip has several samples; else None."""
    ids = getattr(val_set, "clip_ids", None)
    if ids is None:
        _, _, splits = load_splits(cfg.data.dataset, cfg.data.fold, data_root or cfg.data.data_root, cache_dir)
        samples = splits.get("val", [])
        if len(samples) != len(val_set):  # samples were dropped on load: the order is not known
            return None
        ids = [s.clip_id for s in samples]
    if any(i is None for i in ids) or len(set(ids)) == len(ids):
        return None
    return list(ids)


def tune_clip_threshold(probs: np.ndarray, labels: np.ndarray, clip_ids: list[str],
                        thresholds=CLIP_THRESHOLDS) -> tuple[float, float]:
    """The ``aggregate_clips`` threshold with the best clip-level UAR on these (validation) clips,
    the lowest one on ties (closest to counting every part); returns (threshold, clip UAR)."""
    from fer_models import aggregate_clips

    groups: dict[str, list[int]] = defaultdict(list)
    for i, clip in enumerate(clip_ids):
        groups[clip].append(i)
    clips = list(groups.values())
    truth = np.array([np.bincount(labels[idx]).argmax() for idx in clips])
    best = (-1.0, 0.0)
    for t in thresholds:
        pred = np.array([aggregate_clips(probs[idx], t)[0] for idx in clips])
        uar = classification_metrics(truth, pred, probs.shape[1])["uar"]
        if uar > best[0] + 1e-12:
            best = (uar, float(t))
    return best[1], best[0]


class ValidationClips:
    """Validation parts (frames of a clip, or windows of an utterance) and the clip each belongs to."""

    def __init__(self, loader, clip_ids: list):
        self.loader, self.clip_ids = loader, clip_ids

    def tune(self, model, device="cpu") -> dict:
        """``{"clip_threshold": t, "val_clip_uar": u}`` for ``model``."""
        probs, labels, _ = predict(model, self.loader, device=device)
        threshold, uar = tune_clip_threshold(probs, labels, self.clip_ids)
        return {"clip_threshold": threshold, "val_clip_uar": uar}


def _voice_windows(cfg: TrialConfig, cache_dir: Path, data_root: str | None, transform) -> ValidationClips | None:
    """The validation utterances cut into windows as ``predict`` cuts them, by the training data's
    fitted transform (``transform``: speaker normalisation, then the training split's statistics);
    None when the model reads one vector per file or no utterance is longer than one window."""
    from torch.utils.data import TensorDataset

    from bench.data.prep import audio as audio_prep
    from bench.data.prep.media_cache import MediaError

    if transform is None or transform.per_file:
        return None
    _, _, splits = load_splits(cfg.data.dataset, cfg.data.fold, data_root or cfg.data.data_root, cache_dir)
    val = []
    for s in splits["val"]:
        audio = "audio" in s.meta
        path = Path(s.meta["audio"] if audio else s.path)
        try:
            val.append((s, audio_prep.cached_features(path, cache_dir, transform.params,
                                                      s.meta.get("audio_sha256" if audio else "sha256"))))
        except MediaError:
            continue  # the dataset skipped (and reported) it too
    if not val or max(f.shape[1] for _, f in val) <= transform.frames:
        return None
    starts = [transform.window_starts(f.shape[1]) for _, f in val]
    x = transform.windows([f for _, f in val], starts, [s.subject for s, _ in val])
    clip_ids = [i for i, at in enumerate(starts) for _ in at]
    labels = [sample.label for (sample, _), at in zip(val, starts) for _ in at]
    return ValidationClips(_loader(TensorDataset(x, torch.tensor(labels))), clip_ids)


def validation_clips(cfg: TrialConfig, cache_dir: Path, data_root: str | None, val_loader,
                     spec, train_set=None) -> ValidationClips | None:
    """What a clip threshold is tuned on, or None: validation samples sharing a ``clip_id`` (CK+'s
    frames of a sequence), else, for a voice model on frames, the windows ``predict`` would cut
    from each validation utterance (by ``train_set``'s fitted transform)."""
    ids = val_clip_ids(cfg, cache_dir, data_root, val_loader.dataset)
    if ids is not None:
        return ValidationClips(val_loader, ids)
    if spec.modality == "voice":
        return _voice_windows(cfg, cache_dir, data_root, getattr(train_set, "preprocessing", None))
    return None
