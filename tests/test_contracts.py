"""Contracts checked over the registries, so a new entry is tested by registering it.

- Every dataset adapter (``bench.data.DATASETS``): its fake copy (``make_fake``) indexes, each of
  the first two folds splits into non-empty, leakage-free train/val/test, and ``create_dataset``
  gives one batch shaped like the model's ``input_spec`` asks, with labels in range.
- Every fusion kind (``fer_models.fusion_kinds.FUSION_KINDS``): builds, runs forward on
  ``example_inputs``, gives logits of the right shape, and trains (backward reaches its layers).

Families (``bench.families.FAMILIES``) have their own contract test beside the family registry.
"""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

from bench.data import DATASETS, create_dataset, get_adapter
from bench.data.base import CANONICAL_EMOTIONS, check_leakage
from bench.errors import UserError
from fer_models import create_model, example_inputs
from fer_models.fusion_kinds import FUSION_KINDS, UnknownFusionError, get_fusion

NUM_CLASSES = 5
TINY_MEL = {"n_mels": 32, "frames": 32}
TINY_AV = {"visual_kwargs": {"image_size": 32}, "voice_kwargs": {**TINY_MEL, "width": 8}, "hidden": 16}

# The smallest model of each data modality: its input_spec is what create_dataset shapes data for.
SPEC_MODELS = {
    "face": ("fer_cnn", {"image_size": 32}),
    "video": ("cnn_lstm", {"image_size": 32, "frames": 4, "hidden": 16}),
    "voice": ("voice_cnn2d", {**TINY_MEL, "width": 8}),
    "av": ("av_fusion", TINY_AV),
}
# The generated datasets: measured 4-14 s each on 2 idle CPU cores (18-50 s while they were busy).
# The other adapters' fake copies take ~10 s together (CK+'s MTCNN prepare 2 s of it).
SLOW_DATASETS = {"synthetic", "synthetic-voice", "synthetic-video", "synthetic-av", "synthetic-large",
                 "synthetic-voice-large"}


pytestmark = pytest.mark.usefixtures("one_torch_thread")  # 2 shared cores: see conftest


def _shapes(x) -> dict:
    if isinstance(x, dict):
        return {k: _shapes(v) for k, v in x.items()}
    return tuple(x.shape)


def _dataset_params():
    return [pytest.param(name, marks=pytest.mark.slow) if name in SLOW_DATASETS else name for name in sorted(DATASETS)]


@pytest.mark.parametrize("name", _dataset_params())
def test_dataset_adapter_contract(name, tmp_path):
    adapter = get_adapter(name)
    assert adapter.name == name and adapter.protocol and adapter.class_names
    assert adapter.modality in SPEC_MODELS, f"{name}: no model here reads {adapter.modality!r} data"
    root = adapter.make_fake(tmp_path / "data")
    cache = tmp_path / "cache"
    indexed = adapter.index(Path(root), cache)
    samples = indexed.samples
    assert samples, f"{name}: the fake copy indexed no samples"
    assert {s.label for s in samples} <= set(range(len(adapter.class_names)))
    assert len({s.sample_id for s in samples}) == len(samples), f"{name}: sample ids repeat"
    # identical images across splits count as leakage for faces; the media fakes reuse one tone or
    # clip for several speakers (bench/data/fakes.py), so for them identical content is the fake's
    hashes = {s.sample_id: s.meta["sha256"] for s in samples if s.meta.get("sha256")} \
        if adapter.modality == "face" else None
    for fold in range(min(2, adapter.num_folds)):
        splits = adapter.splits(samples, fold)
        assert set(splits) == {"train", "val", "test"} and all(splits.values()), (name, fold)
        assert sorted(s.sample_id for part in splits.values() for s in part) == sorted(s.sample_id for s in samples)
        # the test split shares no subject, recording or media with the data a trial learns or
        # selects on (validation may share the training speaker: TESS has two speakers)
        check_leakage({"train": splits["train"] + splits["val"], "test": splits["test"]}, hashes)
    adapter.prepare(samples, Path(root), cache, progress=False)  # what `fer-bench data prepare` does

    model_name, kwargs = SPEC_MODELS[adapter.modality]
    model = create_model(model_name, num_classes=len(adapter.class_names), **kwargs)
    data = create_dataset(name, "train", 0, model.input_spec, cache_dir=cache, data_root=root, image_size=32)
    loader = torch.utils.data.DataLoader(data, batch_size=2, shuffle=False)
    x, y = next(iter(loader))
    assert _shapes(x) == _shapes(example_inputs(model, batch_size=len(y))), name
    assert y.dtype == torch.long and 0 <= int(y.min()) and int(y.max()) < len(adapter.class_names)
    with torch.no_grad():
        assert model.eval()(x)["logits"].shape == (len(y), len(adapter.class_names))


def _generated(cls) -> bool:
    """The synthetic datasets generate their data into the cache and read no data root."""
    return cls.expected_layout.startswith("nothing: generated")


@pytest.mark.parametrize("name", sorted(DATASETS))
def test_dataset_adapter_declares_its_protocol_and_layout(name, tmp_path):
    cls = DATASETS[name]
    assert cls.protocol and cls.expected_layout and cls.num_folds >= 1, name
    assert set(cls.class_names) <= set(CANONICAL_EMOTIONS), f"{name}: class names outside the canonical emotions"
    if _generated(cls):
        return
    (tmp_path / "photos").mkdir()  # a folder of something else: one error that says what was expected
    (tmp_path / "photos" / "a.jpg").write_bytes(b"x")
    with pytest.raises(UserError, match="expected"):
        get_adapter(name).index(tmp_path, tmp_path / "cache")


@pytest.mark.parametrize("kind", list(FUSION_KINDS))
def test_fusion_kind_contract(kind):
    torch.manual_seed(0)
    model = create_model("av_fusion", num_classes=NUM_CLASSES, fusion=kind, **TINY_AV).train()
    assert model.fusion_kind is FUSION_KINDS[kind]
    x = example_inputs(model, batch_size=3)
    out = model(x)
    assert out["logits"].shape == (3, NUM_CLASSES) and torch.isfinite(out["logits"]).all()
    assert out["features"].shape == (3, model.num_features)
    torch.nn.functional.cross_entropy(out["logits"], torch.tensor([0, 1, 2])).backward()
    own = [p for name, p in model.named_parameters() if not name.startswith(("visual.", "voice."))]
    encoders = [p for name, p in model.named_parameters() if name.startswith(("visual.", "voice."))]
    assert all(p.grad is not None for p in own), f"{kind}: a fusion layer gets no gradient"
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in encoders)
    # an SVM head needs a fused feature vector: the kind says whether it has one
    if FUSION_KINDS[kind].fused_head:
        create_model("av_fusion", num_classes=NUM_CLASSES, fusion=kind, head="svm", **TINY_AV)
    else:
        with pytest.raises(ValueError, match="needs a fused feature vector"):
            create_model("av_fusion", num_classes=NUM_CLASSES, fusion=kind, head="svm", **TINY_AV)


def test_unknown_fusion_kind_names_close_matches():
    with pytest.raises(UnknownFusionError, match=r"unknown fusion kind 'erly'.*Did you mean 'early'"):
        get_fusion("erly")
    with pytest.raises(ValueError, match="model.fusion"):  # a model config error: not retried by bench
        create_model("av_fusion", num_classes=NUM_CLASSES, fusion="gatd", **TINY_AV)
