"""`fer-bench export --onnx`: onnxruntime agrees with PyTorch (< 1e-4) with a dynamic batch axis."""
from __future__ import annotations

import pytest
import torch

import fer_models
from bench.cli import main
from bench.errors import UserError
from bench.inference.export import PARITY_TOLERANCE, export_onnx
from bench.training.checkpoint import save_checkpoint

pytest.importorskip("onnxruntime", reason="onnxruntime is not installed (pip install onnxruntime)")

MODELS = [  # (name, dataset, data.image_size): a face CNN, a timm backbone, a voice CNN
    ("fer_cnn", "synthetic", 48),
    ("timm/mobilenetv3_small_050", "synthetic", 64),
    ("voice_cnn2d", "synthetic-voice", None),
]


def _checkpoint(folder, name, dataset, image_size, **kwargs):
    """A checkpoint as a sweep leaves one, from an untrained model (parity needs no training)."""
    torch.manual_seed(0)
    extra = {"image_size": image_size} if image_size else {}
    model = fer_models.create_model(name, num_classes=7, **extra, **kwargs)
    config = {"model.name": name, "data.dataset": dataset, **{f"model.{k}": v for k, v in kwargs.items()}}
    if image_size:
        config["data.image_size"] = image_size
    save_checkpoint(folder, model=model, epoch=0, config=config)
    return folder


@pytest.mark.parametrize("name,dataset,image_size", MODELS, ids=[m[0] for m in MODELS])
def test_onnx_matches_pytorch_at_two_batch_sizes(tmp_path, name, dataset, image_size):
    import onnx

    ckpt = _checkpoint(tmp_path / "ckpt", name, dataset, image_size)
    report = export_onnx(ckpt, tmp_path / "model.onnx")
    onnx.checker.check_model(str(report.path))
    graph = onnx.load(str(report.path)).graph
    assert graph.input[0].type.tensor_type.shape.dim[0].dim_param == "batch"
    assert report.batch_sizes == [2, 3]  # 3 was never traced: the batch axis really is dynamic
    assert report.ok and report.max_abs_diff < PARITY_TOLERANCE and report.features_max_abs_diff < PARITY_TOLERANCE


def test_cli_prints_the_difference_and_refuses_an_svm_head_without_its_svm(tmp_path, capsys):
    ckpt = _checkpoint(tmp_path / "cnn", "fer_cnn", "synthetic", 48)
    assert main(["export", str(ckpt), "--onnx", str(tmp_path / "cnn.onnx")]) == 0
    assert "max abs difference" in capsys.readouterr().out
    # head=svm whose SVM was never fitted/saved: exporting the linear head instead would be wrong
    svm = _checkpoint(tmp_path / "svm", "av_fusion", "synthetic-av", 48, head="svm")
    with pytest.raises(UserError, match="no fitted head"):
        export_onnx(svm, tmp_path / "svm.onnx")
    assert main(["export", str(tmp_path / "nothing"), "--onnx", str(tmp_path / "x.onnx")]) == 2
