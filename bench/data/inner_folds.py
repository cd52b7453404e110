"""Inner folds for a k-fold objective: an outer fold's training data (its train + val, never its
test) cut into K parts by whole groups and stratified by class; inner fold j validates on part j
and trains on the others.

On a small set one validation split is a handful of subjects (JAFFE: one poser), so a trial's
score is mostly which subjects it drew; the mean over K inner folds is what a k-fold objective
selects on. The groups are the adapter's validation groups (``DatasetAdapter.validation_group``:
subjects, or TESS's words, whose training pool is one speaker), so no group is in two parts."""
from __future__ import annotations

import warnings

import numpy as np

from bench.data.base import Sample, check_leakage
from bench.errors import UserError


def inner_fold_splits(splits: dict[str, list[Sample]], folds: int, fold: int, *, group_of,
                      seed: int = 0) -> dict[str, list[Sample]]:
    """``splits`` (an outer fold's train, val, test) with train and val replaced by inner fold
    ``fold`` of ``folds``: validation = one part of the training groups, train = the rest; the
    outer test split is kept (and checked disjoint) but never cut."""
    from sklearn.model_selection import StratifiedGroupKFold

    if not 0 <= fold < folds:
        raise UserError(f"inner fold {fold} is outside 0..{folds - 1}")
    pool = sorted(splits["train"] + splits["val"], key=lambda s: s.sample_id)  # independent of the order
    groups = [str(group_of(s)) for s in pool]
    if len(set(groups)) < folds:
        raise UserError(f"a {folds}-fold objective needs at least {folds} training groups (subjects); this fold "
                        f"has {len(set(groups))}: lower objective.folds")
    with warnings.catch_warnings():  # "least populated class has fewer members than n_splits"
        warnings.simplefilter("ignore", UserWarning)
        cv = StratifiedGroupKFold(n_splits=folds, shuffle=True, random_state=seed)
        parts = list(cv.split(np.zeros(len(pool)), [s.label for s in pool], groups))
    train_idx, val_idx = parts[fold]
    out = {"train": [pool[i] for i in train_idx], "val": [pool[i] for i in val_idx], "test": list(splits["test"])}
    # the outer test stays apart from both (subjects, clips); train and inner val share no group by
    # construction (TESS's share the one training speaker by design, as its outer train and val do)
    check_leakage({"train": out["train"] + out["val"], "test": out["test"]})
    return out
