"""Self-describing checkpoints (issue 14, point 4): ``fer_models.checkpoint`` writes and reads the
model part (name, kwargs, class names, input spec, weights); loading needs no dataset; older files
(format 1: no class names) still load through bench, or say in one sentence how to convert them."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import fer_models
from bench.data import get_adapter
from bench.training.checkpoint import load_checkpoint, save_checkpoint, upgrade_checkpoint
from bench.training.evaluation import load_trained_model
from fer_models.checkpoint import FORMAT_VERSION, load_model

ROOT = Path(__file__).resolve().parents[1]
CONFIG = {"model.name": "fer_cnn", "model.hidden": 24, "data.dataset": "synthetic", "data.image_size": 32,
          "optim.lr": 0.01}


def _model():
    torch.manual_seed(0)
    return fer_models.create_model("fer_cnn", num_classes=7, hidden=24, image_size=32).eval()


def _same_weights(a, b):
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def _write_format_1(folder: Path, model) -> Path:
    """The layout bench wrote before checkpoints described their model: no format, no model_meta."""
    folder.mkdir(parents=True, exist_ok=True)
    torch.save({"model": model.state_dict(), "optimizer": None, "scheduler": None, "scaler": None, "epoch": 4,
                "rng": torch.get_rng_state(), "config": json.dumps(CONFIG), "extra": json.dumps({"val": {"uar": 0.5}})},
               folder / "checkpoint.pt")
    return folder


def test_a_checkpoint_describes_its_model_and_loads_without_a_dataset(tmp_path, monkeypatch):
    model = _model()
    save_checkpoint(tmp_path, model=model, epoch=2, config=CONFIG)
    loaded, meta = load_model(tmp_path)
    assert meta.format == FORMAT_VERSION and meta.name == "fer_cnn"
    assert meta.kwargs == {"hidden": 24, "image_size": 32}
    assert meta.class_names == tuple(get_adapter("synthetic").class_names)
    assert meta.input_spec == model.input_spec and _same_weights(loaded, model)

    def no_registry(name):
        raise AssertionError(f"the dataset registry was asked for {name!r}")

    monkeypatch.setattr("bench.data.get_adapter", no_registry)
    monkeypatch.setattr("bench.training.checkpoint.describe_model", no_registry)
    model2, cfg, state = load_trained_model(tmp_path)
    assert state["meta"].class_names == meta.class_names and _same_weights(model2, model)
    x = torch.randn(2, *model.input_spec.input_size)
    torch.testing.assert_close(model2(x)["logits"], model(x)["logits"], rtol=0, atol=0)


def test_the_zoo_reads_a_checkpoint_without_importing_bench(tmp_path):
    save_checkpoint(tmp_path, model=_model(), epoch=0, config=CONFIG)
    code = ("import sys\nfrom fer_models import load_model\n"
            f"model, meta = load_model({str(tmp_path)!r})\n"
            "assert not [m for m in sys.modules if m.split('.')[0] in ('bench', 'ray')]\n"
            "print(len(meta.class_names))\n")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and done.stdout.strip() == "7", done.stdout + done.stderr


def test_a_format_1_checkpoint_loads_through_bench_and_converts(tmp_path):
    model = _model()
    folder = _write_format_1(tmp_path / "old", model)
    loaded, cfg, state = load_trained_model(folder)  # class names from the dataset registry
    assert _same_weights(loaded, model) and state["meta"].class_names == tuple(get_adapter("synthetic").class_names)
    assert state["epoch"] == 4 and state["extra"] == {"val": {"uar": 0.5}}
    with pytest.raises(ValueError, match="upgrade_checkpoint") as caught:
        load_model(folder)  # the zoo alone cannot know the class names: one sentence says what to do
    assert str(caught.value).count(". ") == 0
    encoder, _ = load_model(folder, num_classes=7)  # a caller that knows the class count (fusion) can
    assert _same_weights(encoder, model)

    upgrade_checkpoint(folder)
    again, meta = load_model(folder)
    assert meta.format == FORMAT_VERSION and meta.class_names == state["meta"].class_names
    assert _same_weights(again, model)
    upgraded = load_checkpoint(folder)  # the training state is untouched
    assert upgraded["epoch"] == 4 and upgraded["config"] == CONFIG and upgraded["extra"] == {"val": {"uar": 0.5}}


def test_a_fusion_encoder_loads_a_format_1_checkpoint(tmp_path):
    model = _model()
    folder = _write_format_1(tmp_path / "old", model)
    voice = {"n_mels": 32, "frames": 32, "width": 8, "num_blocks": 2}
    fused = fer_models.create_model("av_fusion", num_classes=7, visual_checkpoint=str(folder), voice="voice_cnn2d",
                                    voice_kwargs=voice, freeze_visual=True)
    assert _same_weights(fused.visual, model)
