"""Dataset registry and ``create_dataset``: the only door from trials to data."""
from __future__ import annotations

from pathlib import Path

from fer_models.spec import InputSpec

from ..errors import UserError

# The built-in adapters: each module registers its classes (``@register_dataset``) on import.
from . import (  # noqa: E402,F401,I001
    afew,
    affectnet,
    ckplus,
    cremad,
    emodb,
    fer2013,
    jaffe,
    mmi,
    raf,
    ravdess,
    synthetic,
    synthetic_av,
    synthetic_video,
    synthetic_voice,
    tess,
)
from .base import DatasetAdapter, IndexResult, Sample
from .face_files import landmark_face_dataset
from .media_dataset import create_media_dataset
from .registry import DATASETS, get_adapter, register_dataset  # noqa: F401  (the package's names)
from .tensors import TensorFaceDataset
from .transforms import eval_transform


def load_splits(name: str, fold: int, data_root: str | Path | None, cache_dir: Path,
                seed: int = 0) -> tuple[DatasetAdapter, IndexResult, dict[str, list[Sample]]]:
    adapter = get_adapter(name)
    root = Path(data_root) if data_root else None
    indexed = adapter.index(root, Path(cache_dir))
    if not indexed.samples:
        raise UserError(f"dataset {name!r} found no usable samples under {str(root)!r}; "
                        f"expected {adapter.expected_layout}")
    return adapter, indexed, adapter.splits(indexed.samples, fold, seed)


def create_dataset(name: str, split: str, fold: int, input_spec: InputSpec, *, cache_dir: Path,
                   data_root: str | Path | None = None, image_size: int | None = None,
                   augment: bool = False, seed: int = 0, refit: bool = False,
                   inner: tuple[int, int] | None = None) -> TensorFaceDataset:
    """The ``split`` ('train' | 'val' | 'test') of fold ``fold`` shaped for ``input_spec``.
    ``refit``: the training split is train + val (a benchmark's final retrain); test never changes.
    ``inner`` (folds, j): train and val are inner fold j of the fold's training data
    (``bench.data.inner_folds``: a k-fold objective); test never changes."""
    adapter, _, splits = load_splits(name, fold, data_root, cache_dir, seed=0)
    if inner is not None:
        from bench.data.inner_folds import inner_fold_splits

        splits = inner_fold_splits(splits, inner[0], inner[1], group_of=adapter.validation_group, seed=fold)
    if refit:
        splits = {**splits, "train": splits["train"] + splits["val"]}
    if split not in splits:
        raise UserError(f"dataset {name!r} has no split {split!r}; it has {', '.join(splits)}")
    samples = splits[split]
    if adapter.modality != input_spec.modality:
        raise UserError(f"dataset {name!r} holds {adapter.modality} data but the model expects "
                        f"{input_spec.modality} input")
    if adapter.modality in ("voice", "video", "av"):
        return create_media_dataset(adapter, splits, split, input_spec, cache_dir=Path(cache_dir),
                                    image_size=image_size, augment=augment, seed=seed)
    arrays = adapter.load_arrays(samples, Path(data_root) if data_root else None, Path(cache_dir))
    inputs = eval_transform(input_spec, image_size=image_size)(arrays)  # the transform predict applies too
    if input_spec.extras.get("landmarks"):  # a landmark branch also reads the prepared faces' landmarks
        return landmark_face_dataset(adapter, samples, inputs, Path(data_root) if data_root else None,
                                     Path(cache_dir), augment=augment and split == "train", seed=seed)
    return TensorFaceDataset(inputs, [s.label for s in samples], adapter.class_names,
                             [s.subject for s in samples], augment=augment and split == "train", seed=seed)


__all__ = ["DATASETS", "DatasetAdapter", "Sample", "create_dataset", "eval_transform", "get_adapter", "load_splits",
           "register_dataset"]
