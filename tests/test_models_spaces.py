"""The model zoo's search spaces, the `models list` command, and (slow) one epoch of one sampled
config of each space on its synthetic dataset."""
from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from bench.sweep.spaces import builtin_space_path, load_space

SPACES = Path(__file__).resolve().parents[1] / "search_spaces"
ZOO_SPACES = sorted(str(p.relative_to(SPACES)) for p in SPACES.rglob("*.yaml"))  # every shipped space


@pytest.mark.parametrize("relative", ZOO_SPACES)
def test_space_loads(relative):
    space = load_space(SPACES / relative)
    assert space.family == relative.split("/")[0].removesuffix(".yaml")
    assert space.model_names()
    assert space.samples <= (10 if "synthetic" in relative else 32)


def test_face_space_searches_dense_head_class_weights_and_timm_recipe():
    keys = {p.key for p in load_space(SPACES / "face.yaml").params}
    assert {"model.dense_units", "model.num_layers", "model.batch_norm", "task.class_weights",
            "model.attention", "model.attn_heads", "data.auto_augment", "data.re_prob", "data.mixup",
            "train.ema"} <= keys
    # most face copies ship crops without MTCNN landmarks: no default space searches them
    for relative in [r for r in ZOO_SPACES if r.startswith("face")]:
        assert "model.landmarks" not in {p.key for p in load_space(SPACES / relative).params}


@pytest.mark.parametrize("dataset,size", [("ckplus", 48), ("fer2013", 48), ("ferplus", 48), ("jaffe", 64),
                                          ("raf", 100)])
def test_per_dataset_face_spaces_train_at_native_resolution(dataset, size):
    space = load_space(builtin_space_path("face", dataset))
    assert space.path.endswith(f"face/{dataset}.yaml")
    assert space.fixed["data.image_size"] == size and space.fixed["data.tta"] is True
    assert "fer_cnn" in space.model_names() and any(m.startswith("timm/") for m in space.model_names())
    # every recipe option can be switched off, so the plain recipe stays reachable
    params = {p.key: p.values for p in space.params}
    assert "none" in params["data.auto_augment"] and 0.0 in params["data.mixup"] and False in params["train.ema"]


def test_mic_space_expresses_the_ablations():
    params = {p.key: p.values for p in load_space(SPACES / "mic.yaml").params}
    assert 0.0 in params["model.alpha"] and 0.0 in params["model.beta"]
    assert set(params["model.input_frames"]) == {"residual", "rgb"}


def test_models_list_json(capsys):
    from bench.cli import main

    assert main(["models", "list", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    by_name = {r["name"]: r for r in rows}
    import fer_models

    assert set(by_name) == set(fer_models.list_models())
    from fer_models.classic import CLASSIC_MODELS

    for row in rows:  # a scikit-learn head has no parameters until a trial fits it
        assert (row["params"] > 0 or row["name"] in CLASSIC_MODELS) and \
            row["modality"] in {"face", "video", "mic", "voice", "fusion"}
        assert "input_size" in row["input_spec"]
    assert by_name["mic"]["trainable_params"] < by_name["mic"]["params"]  # the frozen identity encoder


SMOKE = [("video", "synthetic-video"), ("mic", "synthetic-video"), ("voice", "synthetic-voice"),
         ("fusion", "synthetic-av")]


def _sample_config(space, seed: int = 0) -> dict:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed))
    trial = study.ask()
    constants = space.define_by_run()(trial)
    return {**constants, **trial.params}


@pytest.fixture(scope="module")
def media_cache(tmp_path_factory):
    return tmp_path_factory.mktemp("media-cache")


@pytest.mark.slow
@pytest.mark.parametrize("modality,dataset", SMOKE)
def test_one_epoch_of_a_sampled_config(modality, dataset, media_cache):
    from bench.data import DATASETS
    from bench.training.trainable import run_trial

    if dataset not in DATASETS:
        pytest.skip(f"dataset {dataset!r} is not registered yet")
    space = load_space(builtin_space_path(modality, dataset))
    config = {**_sample_config(space), "data.dataset": dataset, "train.max_epochs": 1}
    reports = []
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        run_trial(config, cache_dir=media_cache, report=lambda metrics, ckpt: reports.append(metrics))
    finally:
        torch.set_num_threads(previous)
    assert len(reports) == 1
    metrics = reports[0]
    assert math.isfinite(metrics["train/loss"]) and 0.0 <= metrics["val/uar"] <= 1.0
    assert metrics["params"] > 0
