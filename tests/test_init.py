"""model.init: a trial starts from another model's weights (bench.training.init, fer_models.transfer),
resolved, leak-checked and pinned on the driver (bench.sweep.init_refs)."""
from __future__ import annotations

import shutil
from dataclasses import replace
from pathlib import Path

import pytest
import torch

import fer_models
from bench.data import get_adapter, load_splits
from bench.data.ckplus import CkPlus
from bench.errors import UserError
from bench.results.record import Record
from bench.results.store import append_record, load_records
from bench.sweep import feasibility, init_refs
from bench.sweep.spaces import builtin_space_path, load_space
from bench.training.checkpoint import load_checkpoint, model_kwargs, save_checkpoint
from bench.training.config import TrialConfig
from bench.training.init import apply_init, digest
from bench.training.trainable import run_trial

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def source_checkpoint(folder: Path, *, dataset="synthetic", in_chans=3, image_size=32, width=8, root=None) -> Path:
    """A fer_cnn checkpoint as a trial writes it (random weights: only the copying is tested)."""
    config = {"model.name": "fer_cnn", "model.in_chans": in_chans, "model.width": width, "model.hidden": 16,
              "data.dataset": dataset, "data.image_size": image_size, "data.fold": 0}
    if root is not None:
        config["data.data_root"] = str(root)
    torch.manual_seed(1)
    model = fer_models.create_model("fer_cnn", num_classes=7, in_chans=in_chans, width=width, hidden=16,
                                    image_size=image_size)
    save_checkpoint(folder, model=model, epoch=0, config=config)
    return folder


def test_init_from_a_checkpoint_rebuilds_the_head_and_loads_the_backbone(tmp_path):
    folder = source_checkpoint(tmp_path / "src")
    source = load_checkpoint(folder)["model"]
    cfg = TrialConfig.from_flat({"model.name": "fer_cnn", "model.in_chans": 3, "model.init": str(folder),
                                 "data.image_size": 32})
    kwargs = model_kwargs(cfg)
    assert kwargs["width"] == 8 and kwargs["hidden"] == 16  # the init's architecture, not the defaults
    target = fer_models.create_model("fer_cnn", num_classes=8, **kwargs)  # CK+'s 8 classes, not 7
    head_before = target.head.weight.detach().clone()
    loaded = apply_init(target, str(folder), "fer_cnn")
    state = target.state_dict()
    for key, value in source.items():
        if key.startswith("head."):
            continue
        assert torch.equal(state[key], value), key
    assert tuple(target.head.weight.shape) == (8, 16)
    assert torch.equal(target.head.weight, head_before)  # freshly initialised for the new classes
    assert "features.0.weight" in loaded and not any(n.startswith("head.") for n in loaded)


def test_grey_to_rgb_and_back_adapt_the_first_convolution(tmp_path):
    grey = source_checkpoint(tmp_path / "grey", in_chans=1)
    rgb_model = fer_models.create_model("fer_cnn", num_classes=7, in_chans=3, width=8, hidden=16, image_size=32)
    apply_init(rgb_model, str(grey), "fer_cnn")
    source_w = load_checkpoint(grey)["model"]["features.0.weight"]
    assert torch.allclose(rgb_model.features[0].weight, source_w.repeat(1, 3, 1, 1) / 3)
    # a grey face given as three equal channels gives the grey model's first-layer response
    x = torch.rand(2, 1, 32, 32)
    grey_conv = torch.nn.functional.conv2d(x, source_w, load_checkpoint(grey)["model"]["features.0.bias"], padding=1)
    assert torch.allclose(rgb_model.features[0](x.repeat(1, 3, 1, 1)), grey_conv, atol=1e-5)
    rgb = source_checkpoint(tmp_path / "rgb", in_chans=3)
    grey_model = fer_models.create_model("fer_cnn", num_classes=7, in_chans=1, width=8, hidden=16, image_size=32)
    apply_init(grey_model, str(rgb), "fer_cnn")
    assert torch.allclose(grey_model.features[0].weight, load_checkpoint(rgb)["model"]["features.0.weight"].sum(1,
                                                                                                           True))


def test_a_layer_that_does_not_fit_is_one_sentence(tmp_path):
    folder = source_checkpoint(tmp_path / "src", image_size=32)
    model = fer_models.create_model("fer_cnn", num_classes=7, in_chans=3, width=8, hidden=16, image_size=48)
    with pytest.raises(UserError, match="dense.1.weight") as err:
        apply_init(model, str(folder), "fer_cnn")  # fer_cnn's dense layer is sized by the input
    assert "\n" not in str(err.value)


def test_lr_multiplier_freezing_and_exact_resume(tmp_path, cache_dir):
    folder = source_checkpoint(tmp_path / "src", image_size=32)
    config = {"model.name": "fer_cnn", "model.in_chans": 3, "model.init": str(folder), "data.dataset": "synthetic",
              "data.image_size": 32, "train.batch_size": 64, "optim.lr": 3e-3, "train.max_epochs": 3,
              "optim.init_lr_mult": 0.1, "train.freeze_epochs": 1}
    full, saved = [], {}

    def keep(metrics, d):
        full.append(metrics)
        if metrics["epoch"] == 1:
            saved["state"] = load_checkpoint(d)

    run_trial(config, cache_dir=cache_dir, report=keep)
    state = saved["state"]
    source = load_checkpoint(folder)["model"]
    # frozen through epoch 1: the loaded convolution is unchanged, the new head moved
    assert torch.equal(state["model"]["features.0.weight"], source["features.0.weight"])
    lrs = sorted({g["lr"] for g in state["optimizer"]["param_groups"]})
    assert lrs[0] == pytest.approx(lrs[-1] * 0.1, rel=1e-6)
    resumed = []
    run_trial(config, cache_dir=cache_dir, report=lambda m, d: resumed.append(m), resume_state=state)
    assert [m["epoch"] for m in resumed] == [2, 3]
    for a, b in zip(full[1:], resumed):
        assert a["val/uar"] == b["val/uar"]
        assert a["train/loss"] == pytest.approx(b["train/loss"], rel=1e-6)


@pytest.fixture(scope="module")
def fakes(tmp_path_factory):
    """A JAFFE and a CK+48 fake copy, and a FER2013 one for a clean source."""
    out = {}
    for name in ("jaffe", "fer2013"):
        folder = tmp_path_factory.mktemp(name)
        out[name] = get_adapter(name).make_fake(folder)
    out["ckplus"] = CkPlus.make_fake_ck48(tmp_path_factory.mktemp("ckplus"))
    return out


def context(dataset: str, root: Path, cache: Path, results: Path | None, model: str | None = "fer_cnn",
            fixed: dict | None = None):
    adapter, indexed, _ = load_splits(dataset, 0, root, cache)
    return feasibility.Context("face", adapter, indexed.samples, fixed=fixed or {}, data_root=root, cache_dir=cache,
                               model=model, results_dir=results)


def leader(results: Path, folder: Path, dataset: str, uar: float = 0.5) -> Record:
    record = Record(kind="search", dataset=dataset, family="face", run=f"{dataset}-run", selection="val",
                    val={"uar": uar}, checkpoint=str(folder), config={"model.name": "fer_cnn"})
    append_record(results, record)
    return record


def test_best_references_resolve_by_the_selection_rule_and_unknown_ones_leave_the_space(tmp_path, fakes):
    results, cache = tmp_path / "results", tmp_path / "cache"
    weaker = source_checkpoint(tmp_path / "weak", dataset="fer2013", in_chans=1, image_size=64, root=fakes["fer2013"])
    better = source_checkpoint(tmp_path / "best", dataset="fer2013", in_chans=1, image_size=64, root=fakes["fer2013"])
    leader(results, weaker, "fer2013", 0.4)
    best = leader(results, better, "fer2013", 0.6)
    assert init_refs.resolve_value("best:fer2013/face", results).path == str(better.resolve())
    space = load_space(builtin_space_path("face", "jaffe"))
    ctx = context("jaffe", fakes["jaffe"], cache, results, model=None)
    resolution = feasibility.resolve(space, ctx)
    line = resolution.line("jaffe")
    assert "model.init=best:raf/face (no raf/face record with a checkpoint" in line
    assert line.count("best:affectnet/face") == 1 and "best:fer2013/face" not in line
    kept = next(p for p in resolution.space.params if p.key == "model.init")
    assert kept.values == ("none", "best:fer2013/face")
    pinned = init_refs.pin(resolution.space, results)
    assert next(p for p in pinned.params if p.key == "model.init").values == ("none", str(better.resolve()))
    fields = init_refs.record_fields({"model.init": str(better.resolve())}, results)
    assert fields == {"init_record": best.id, "init_dataset": "fer2013", "init_hash": digest(str(better))}


def test_no_earlier_sweep_gives_todays_space(tmp_path, fakes):
    space = load_space(builtin_space_path("face", "jaffe"))
    resolved = feasibility.resolve(space, context("jaffe", fakes["jaffe"], tmp_path / "c", tmp_path / "r", None))
    assert "model.init" not in {p.key for p in resolved.space.params} and "model.init" not in resolved.space.fixed
    assert {"model.blocks", "model.width"} <= {p.key for p in resolved.space.params}
    assert all("model.init" not in p.when for p in resolved.space.params)


def test_an_init_of_the_same_dataset_is_refused_in_one_sentence(tmp_path, fakes):
    folder = source_checkpoint(tmp_path / "src", dataset="jaffe", in_chans=1, image_size=64, root=fakes["jaffe"])
    ctx = context("jaffe", fakes["jaffe"], tmp_path / "cache", None, fixed={"data.image_size": 64,
                                                                          "model.in_chans": 1})
    reason = init_refs.init_check("model.init", str(folder), ctx)
    assert reason == "it was trained on jaffe itself, so another fold's model has seen this fold's test subjects"


def test_an_init_whose_training_files_hold_the_targets_is_refused_with_counts(tmp_path, fakes):
    root = tmp_path / "jaffe-copy"
    shutil.copytree(fakes["jaffe"], root)
    ck_files = sorted((fakes["ckplus"] / "CK+48" / "happy").glob("*.png"))[:3]
    jaffe_files = sorted((root / "jaffe_db").glob("[!n]*.tiff"))
    for ck, jf in zip(ck_files, [f for f in jaffe_files if not f.name.startswith(("KA.", "KL."))][:3]):
        shutil.copyfile(ck, jf)  # CK+ faces hidden in the init's training data
    folder = source_checkpoint(tmp_path / "src", dataset="jaffe", in_chans=1, image_size=48, root=root)
    ctx = context("ckplus", fakes["ckplus"], tmp_path / "cache", None, fixed={"data.image_size": 48,
                                                                            "model.in_chans": 1})
    reason = init_refs.init_check("model.init", str(folder), ctx)
    assert reason is not None and "identical by content hash" in reason
    assert reason.startswith("3 of ckplus's 210 files")
    clean = source_checkpoint(tmp_path / "clean", dataset="jaffe", in_chans=1, image_size=48, root=fakes["jaffe"])
    assert init_refs.init_check("model.init", str(clean), ctx) is None


def test_classic_heads_have_nothing_to_initialise(tmp_path, fakes):
    ctx = context("jaffe", fakes["jaffe"], tmp_path / "cache", None, model="sk_svm")
    assert "nothing to initialise" in init_refs.init_check("model.init", "/anywhere", ctx)


def test_init_fields_round_trip_and_old_lines_load(tmp_path):
    record = Record(kind="benchmark", dataset="jaffe", family="face", init_record="abc123",
                    init_dataset="fer2013", init_hash="0123456789abcdef")
    append_record(tmp_path, record)
    (back,) = load_records(tmp_path)
    assert (back.init_record, back.init_dataset, back.init_hash) == ("abc123", "fer2013", "0123456789abcdef")
    assert back.to_dict() == record.to_dict()
    old = Record.from_dict({"kind": "search", "dataset": "jaffe", "modality": "face"})
    assert old.init_record is None and "init_record" not in old.to_dict()


def test_heads_without_an_init_still_sample_their_features():
    """``when: {model.init: [none]}`` holds for a model that never samples model.init (a
    scikit-learn head once the feasibility check made it inactive there): spaces.UNSAMPLED."""
    import optuna

    space = load_space(builtin_space_path("voice", "tess"))
    params = []
    for p in space.params:  # what resolving does for the heads: model.init only for voice_mlp
        params.append(replace(p, when={**p.when, "model.name": ("voice_mlp",)}) if p.key == "model.init" else p)
    fn = replace(space, params=tuple(params)).define_by_run({})
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    seen = set()
    for _ in range(40):
        trial = study.ask()
        fn(trial)
        name, init = trial.params["model.name"], trial.params.get("model.init", "none")
        assert ("model.features" in trial.params) == (init == "none"), trial.params
        seen.add((name, init))
        study.tell(trial, 0.0)
    assert ("sk_svm", "none") in seen and ("voice_mlp", "best:cremad/voice") in seen


def test_init_flag_adds_a_reference():
    jaffe = init_refs.add_refs(load_space(builtin_space_path("face", "jaffe")), ["/models/x"])
    assert next(p for p in jaffe.params if p.key == "model.init").values[-1] == "/models/x"
    face = init_refs.add_refs(load_space(builtin_space_path("face")), ["best:raf/face"])
    keys = [p.key for p in face.params]
    assert keys[:2] == ["model.name", "model.init"]
    assert face.params[1].values == ("none", "best:raf/face")


def _trainable_models():
    from fer_models.classic import CLASSIC_MODELS

    return [n for n in fer_models.list_models() if n not in CLASSIC_MODELS]


@pytest.mark.parametrize("name", _trainable_models())
def test_every_trainable_model_starts_from_another_of_its_kind(name):
    """The loading contract over the registry: all but the classifier ``head`` is copied, and the
    head takes the new class count."""
    from test_models_contract import SMALL

    from fer_models.transfer import init_from_state, is_head

    kwargs = SMALL.get(fer_models.model_entry(name).name, {})
    torch.manual_seed(0)
    source = fer_models.create_model(name, num_classes=7, **kwargs)
    torch.manual_seed(1)
    target = fer_models.create_model(name, num_classes=3, **kwargs)
    loaded = init_from_state(target, source.state_dict())
    assert loaded
    mine = target.state_dict()
    for key, value in source.state_dict().items():
        if not is_head(key):
            assert torch.equal(mine[key], value), key
    assert target(fer_models.example_inputs(target, batch_size=2))["logits"].shape[-1] == 3


def test_a_convolutional_backbone_takes_another_resolution_and_the_dense_cnn_does_not():
    from fer_models.transfer import shapes_fit

    small = fer_models.create_model("timm/resnet10t", num_classes=7, image_size=32, in_chans=1)
    with torch.device("meta"):
        large = fer_models.create_model("timm/resnet10t", num_classes=3, image_size=64, in_chans=3)
        cnn = fer_models.create_model("fer_cnn", num_classes=3, image_size=64)
    shapes = {k: tuple(v.shape) for k, v in small.state_dict().items()}
    assert shapes_fit(large, shapes, source_channels=1, target_channels=3) is None  # grey -> RGB, 32 -> 64 px
    cnn_shapes = {k: tuple(v.shape) for k, v in
                  fer_models.create_model("fer_cnn", num_classes=7, image_size=48).state_dict().items()}
    assert "dense.1.weight" in shapes_fit(cnn, cnn_shapes, 1, 1)


@pytest.mark.parametrize("ref, says", [("best:raf/face", "--init best:raf/face: no raf/face record with a checkpoint"),
                                       ("nowhere/model", "--init nowhere/model: no checkpoint folder or weights file")])
def test_a_typed_init_that_names_nothing_is_refused_before_the_sweep(tmp_path, capsys, ref, says):
    from bench.cli import main

    code = main(["search", "face", "--dataset", "synthetic", "--results-dir", str(tmp_path / "r"),
                 "--cache-dir", str(tmp_path / "c"), "--init", ref, "--quiet"])
    err = capsys.readouterr().err
    assert code == 2 and says in err and "Traceback" not in err
    assert not (tmp_path / "r" / "runs").exists()  # refused before any sweep began
