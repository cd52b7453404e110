"""No infeasible trial is ever sampled: a space is resolved against the dataset and each model
before Ray starts (bench.sweep.feasibility), and every configuration the resolved space can sample
builds its model and its data."""
from __future__ import annotations

import zlib
from pathlib import Path

import optuna
import pytest
import torch

from bench.cli import main
from bench.data import DATASETS, get_adapter, load_splits
from bench.data.ckplus import CkPlus
from bench.errors import UserError
from bench.sweep import feasibility
from bench.sweep.spaces import builtin_space_path, load_space
from bench.training.config import TrialConfig
from bench.training.trainable import build_parts

# synthetic-large is synthetic's generator with more identities (same image size, channels and
# classes): what a space can sample on it is what it can sample on synthetic, and building its
# 7,000 faces at each configuration's size cost ~17 s a space here.
SAME_AS_ANOTHER_LAYOUT = {"synthetic-large"}
FACE_LAYOUTS = sorted(n for n, cls in DATASETS.items()
                      if cls.modality == "face" and n not in SAME_AS_ANOTHER_LAYOUT) + ["ckplus-48"]


pytestmark = pytest.mark.usefixtures("one_torch_thread")  # 2 shared cores: see conftest


@pytest.fixture(scope="module")
def face_fakes(tmp_path_factory) -> dict[str, tuple[str, Path, Path]]:
    """layout -> (dataset, data root, cache): every registered face dataset's fake copy (CK+ in both
    its layouts), indexed and prepared once as a sweep's driver would."""
    out = {}
    for layout in FACE_LAYOUTS:
        dataset = "ckplus" if layout == "ckplus-48" else layout
        folder = tmp_path_factory.mktemp(layout)
        root = CkPlus.make_fake_ck48(folder) if layout == "ckplus-48" else get_adapter(dataset).make_fake(folder)
        cache = folder / "cache"
        adapter, indexed, _ = load_splits(dataset, 0, root, cache)
        adapter.prepare(indexed.samples, root, cache, progress=False)
        out[layout] = (dataset, root, cache)
    return out


def context_for(dataset: str, root: Path, cache: Path) -> feasibility.Context:
    adapter, indexed, _ = load_splits(dataset, 0, root, cache)
    return feasibility.Context("face", adapter, indexed.samples, data_root=root, cache_dir=cache)


def sample_configs(space, extra_fixed: dict, n: int, seed: int = 0) -> list[dict]:
    """What Ray's OptunaSearch would hand the trials: the define-by-run params plus constants."""
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed))
    fn = space.define_by_run(extra_fixed)
    configs = []
    for _ in range(n):
        trial = study.ask()
        constants = fn(trial)
        configs.append({**trial.params, **constants})
        study.tell(trial, 0.5)
    return configs


def assert_builds(config: dict, cache: Path) -> None:
    """The trial's own construction (model, datasets, loaders, optimizer, recipe), then one
    forward pass of a few training samples."""
    parts = build_parts(TrialConfig.from_flat(config), cache)
    inputs, _ = next(iter(parts.train_loader))
    inputs = {k: v[:4] for k, v in inputs.items()} if isinstance(inputs, dict) else inputs[:4]
    parts.model.eval()
    with torch.no_grad():
        out = parts.model(inputs)
    assert out["logits"].shape[-1] == len(get_adapter(config["data.dataset"]).class_names)


def face_spaces() -> list[Path]:
    root = builtin_space_path("face").parent
    return [builtin_space_path("face"), *sorted((root / "face").glob("*.yaml"))]


def check_space_on(space_path: Path, layout: str, face_fakes, draws: int, device: str | None = None,
                   seed: int = 0) -> None:
    dataset, root, cache = face_fakes[layout]
    space = load_space(space_path, device)
    extra = {"data.dataset": dataset, "data.data_root": str(root), "train.max_epochs": 1, "train.seed": 0}
    resolution = feasibility.resolve(space, context_for(dataset, root, cache), extra_fixed=extra)
    assert resolution.space.space_hash == space.space_hash  # resume compares the file's hash
    for config in sample_configs(resolution.space, extra, draws, seed=seed):
        try:
            assert_builds(config, cache)
        except Exception as exc:
            raise AssertionError(f"{space_path.name} on {layout}: {config} does not build: {exc}") from exc


@pytest.mark.parametrize("layout", FACE_LAYOUTS)
def test_default_face_space_samples_only_buildable_configs(face_fakes, layout):
    check_space_on(builtin_space_path("face"), layout, face_fakes, draws=5)


@pytest.mark.parametrize("device", ["cpu", "gpu"])  # a space's device sections resolve to different spaces
@pytest.mark.parametrize("space_path", face_spaces()[1:], ids=lambda p: p.stem)
def test_each_dataset_space_samples_only_buildable_configs_on_its_dataset(face_fakes, space_path, device):
    layouts = [space_path.stem] if space_path.stem in face_fakes else []
    layouts += ["ckplus-48"] if space_path.stem == "ckplus" else []
    for layout in layouts or pytest.skip(f"{space_path.stem} is not a face dataset with a fake copy"):
        check_space_on(space_path, layout, face_fakes, draws=5, device=device)


@pytest.mark.slow
@pytest.mark.parametrize("space_path", face_spaces(), ids=lambda p: p.stem)
def test_every_face_space_on_every_face_dataset(face_fakes, space_path):
    # a seed per layout: each layout gets other draws, so the matrix samples each space 3 x 10 ways
    for layout in FACE_LAYOUTS:
        check_space_on(space_path, layout, face_fakes, draws=3, seed=zlib.crc32(f"{space_path.stem}/{layout}".encode()))


LANDMARK_SPACE = """
schema: 1
modality: face
fixed: {data.image_size: 48}
params:
  model.name:      {choice: [fer_cnn, timm/resnet18]}
  model.landmarks: {choice: [false, true], when: {model.name: [timm/resnet18]}}
  model.num_layers: {int: [0, 2], when: {model.landmarks: [true]}}
  optim.lr:        {float: [1.0e-4, 1.0e-2], log: true}
"""


def test_landmarks_leave_the_space_on_face_crops_and_stay_on_detected_faces(face_fakes, tmp_path):
    path = tmp_path / "landmarks.yaml"
    path.write_text(LANDMARK_SPACE)
    space = load_space(path)
    cropped = feasibility.resolve(space, context_for(*face_fakes["ckplus-48"]))
    assert [r.key for r in cropped.removed] == ["model.landmarks"] and cropped.removed[0].value is True
    # false is every model's default: the param goes, and so does the one that needed it true
    assert [p.key for p in cropped.space.params] == ["model.name", "optim.lr"]
    line = cropped.line("ckplus")
    assert line.count("\n") == 0 and "model.landmarks=true" in line and "without MTCNN landmarks" in line
    detected = feasibility.resolve(space, context_for(*face_fakes["jaffe"]))  # JAFFE is aligned by MTCNN
    assert not detected.removed and detected.line("jaffe") is None
    landmarks = next(p for p in detected.space.params if p.key == "model.landmarks")
    assert landmarks.values == (False, True)


VIT_SPACE = """
schema: 1
modality: face
fixed: {data.image_size: 32}
params:
  model.name:      {choice: [fer_cnn, timm/resnet18, timm/vit_tiny_patch16_224, fer_voice_cnn_like]}
  model.attention: {choice: [none, self], when: {model.name: [timm/resnet18, timm/vit_tiny_patch16_224]}}
  model.attn_heads: {int: [1, 4], when: {model.attention: self}}
  optim.lr:        {float: [1.0e-4, 1.0e-2], log: true}
"""


def test_models_and_values_that_cannot_run_are_removed_per_model(face_fakes, tmp_path):
    # a ViT at 224 px: self-attention needs a spatial map, which a ViT has not; at 32 px, no ViT at all
    from fer_models import list_models

    voice = list_models(modality="voice")[0]
    path = tmp_path / "vit.yaml"
    path.write_text(VIT_SPACE.replace("fer_voice_cnn_like", voice).replace("image_size: 32", "image_size: 224"))
    resolution = feasibility.resolve(load_space(path), context_for(*face_fakes["raf"]))
    removed = {(r.key, r.value, r.models) for r in resolution.removed}
    assert ("model.name", voice, ()) in removed  # a voice model in a face space
    attention = next(p for p in resolution.space.params if p.key == "model.attention")
    assert attention.values == ("none", "self") and attention.when["model.name"] == ("timm/resnet18",)
    configs = sample_configs(resolution.space, {"data.dataset": "raf"}, 40)
    assert {c["model.name"] for c in configs} == {"fer_cnn", "timm/resnet18", "timm/vit_tiny_patch16_224"}
    assert all("model.attention" not in c for c in configs if c["model.name"] != "timm/resnet18")

    small = tmp_path / "small.yaml"
    small.write_text(VIT_SPACE.replace("fer_voice_cnn_like", "fer_cnn"))
    at32 = feasibility.resolve(load_space(small), context_for(*face_fakes["raf"]))
    assert ("model.name", "timm/vit_tiny_patch16_224") in {(r.key, r.value) for r in at32.removed}
    # resume rebuilds the same space from the stored rows, without running a check
    rows = [feasibility.Removal.from_dict(r) for r in at32.to_meta()]
    assert feasibility.apply(load_space(small), rows) == at32.space


def test_a_model_key_no_model_takes_is_one_sentence(face_fakes, tmp_path):
    path = tmp_path / "typo.yaml"
    path.write_text("schema: 1\nmodality: face\nparams:\n  model.name: {choice: [fer_cnn]}\n"
                    "  model.hiden: {choice: [64, 128]}\n")
    with pytest.raises(UserError, match=r"model.hiden is not a parameter of fer_cnn \(did you mean 'model.hidden'"):
        feasibility.resolve(load_space(path), context_for(*face_fakes["raf"]))


def test_a_param_with_no_feasible_value_exits_2_naming_it(face_fakes, tmp_path, capsys):
    dataset, root, cache = face_fakes["ckplus-48"]
    path = tmp_path / "only-landmarks.yaml"
    path.write_text("schema: 1\nmodality: face\nfixed: {data.image_size: 32}\nparams:\n"
                    "  model.name: {choice: [timm/resnet18]}\n  model.landmarks: {choice: [true]}\n")
    code = main(["search", "face", "--dataset", dataset, "--data-root", str(root), "--space", str(path),
                 "--cache-dir", str(cache), "--results-dir", str(tmp_path / "results"), "--quiet"])
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert "no value of model.landmarks can run on dataset 'ckplus'" in err and "without MTCNN landmarks" in err


def test_other_modules_register_their_own_checks(face_fakes, tmp_path):
    def no_big_batches(key, value, context):
        return "too big for this test" if value == 128 else None

    feasibility.register_check(no_big_batches, keys=["train.batch_size"])
    try:
        path = tmp_path / "batches.yaml"
        path.write_text("schema: 1\nmodality: face\nparams:\n  train.batch_size: {choice: [32, 128]}\n"
                        "  optim.lr: {float: [1.0e-4, 1.0e-2], log: true}\n")
        resolution = feasibility.resolve(load_space(path), context_for(*face_fakes["raf"]))
    finally:
        feasibility.unregister_check(no_big_batches)
    assert resolution.space.fixed["train.batch_size"] == 32  # one value left, no condition: fixed
    assert [p.key for p in resolution.space.params] == ["optim.lr"]
    assert "train.batch_size=128 (too big for this test)" in resolution.line("raf")
