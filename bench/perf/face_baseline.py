"""The fixed baseline a search must beat: the 2-conv FER CNN (``fer_cnn`` defaults) at 48 px, Adam
1e-3, 30 epochs, horizontal flips only, trained on train+val of each fold and tested on the fold's
test split after the last epoch (no selection, no tuning). Issue 12 measured it on CK+48 at
88.98 +- 4.44 % accuracy / 81.30 +- 8.40 % UAR over 10 folds.

    python -m bench.perf.face_baseline --dataset jaffe --data-root ../shared/data/jaffe
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import ConcatDataset, DataLoader

import fer_models
from bench.training.engine import evaluate
from bench.training.tasks import Classification
from bench.training.trainable import seed_everything

from ..data import create_dataset, get_adapter
from ..paths import cache_dir as default_cache


def run_fold(dataset: str, fold: int, *, data_root: str | None, cache_dir: Path, image_size: int = 48,
             epochs: int = 30, batch_size: int = 32, lr: float = 1e-3, seed: int = 0) -> dict:
    seed_everything(seed)
    num_classes = len(get_adapter(dataset).class_names)
    model = fer_models.create_model("fer_cnn", num_classes=num_classes, image_size=image_size)
    common = dict(cache_dir=cache_dir, data_root=data_root, image_size=image_size)
    train = ConcatDataset([create_dataset(dataset, split, fold, model.input_spec, **common)
                           for split in ("train", "val")])
    test = create_dataset(dataset, "test", fold, model.input_spec, **common)
    loader = DataLoader(train, batch_size=batch_size, shuffle=True, generator=torch.Generator().manual_seed(seed),
                        drop_last=len(train) % batch_size == 1)  # BatchNorm cannot train on a batch of one
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    task = Classification()
    start = time.perf_counter()
    for _ in range(epochs):
        model.train()
        for x, y in loader:
            flip = torch.rand(len(x)) < 0.5  # flips only: the baseline has no other augmentation
            x = torch.where(flip.view(-1, 1, 1, 1), x.flip(-1), x)
            loss = task(model(x), y)["loss"]
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
    metrics = evaluate(model, DataLoader(test, batch_size=256), task)
    return {"fold": fold, "accuracy": metrics["accuracy"], "uar": metrics["uar"], "test_samples": len(test),
            "train_samples": len(train), "seconds": time.perf_counter() - start}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", required=True)
    parser.add_argument("--data-root")
    parser.add_argument("--cache-dir")
    parser.add_argument("--image-size", type=int, default=48)
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    parser.add_argument("--json", help="write the per-fold figures here")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    folds = get_adapter(args.dataset).num_folds
    rows = []
    for fold in range(folds):
        rows.append(run_fold(args.dataset, fold, data_root=args.data_root, cache_dir=default_cache(args.cache_dir),
                             image_size=args.image_size, epochs=args.epochs))
        r = rows[-1]
        print(f"fold {fold}: accuracy {100 * r['accuracy']:.2f} %  UAR {100 * r['uar']:.2f} %  "
              f"({r['test_samples']} test, {r['seconds']:.0f} s)", flush=True)
    acc = 100 * np.array([r["accuracy"] for r in rows])
    uar = 100 * np.array([r["uar"] for r in rows])
    print(f"{args.dataset}, {folds} folds: accuracy {acc.mean():.2f} +- {acc.std(ddof=1) if folds > 1 else 0:.2f} %, "
          f"UAR {uar.mean():.2f} +- {uar.std(ddof=1) if folds > 1 else 0:.2f} %, "
          f"{sum(r['seconds'] for r in rows):.0f} s of training")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
