"""Voice representations by name: openSMILE functionals/LLDs and frozen speech-encoder layers,
cached per file and keyed by representation + parameters; the SSL path runs on a randomly
initialised small configuration of the real torchaudio architectures."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

import fer_models
from bench.data import create_dataset, get_adapter
from bench.data.prep import audio as audio_prep
from bench.data.prep.media_cache import WORK
from bench.data.tensors import speaker_normalise
from bench.errors import UserError
from fer_models.plugins import PLUGINS_ENV
from fer_models.voice_features import feature_spec

SMALL = dict(extractor_mode="group_norm",
             extractor_conv_layer_config=[(32, 10, 5)] + [(32, 3, 2)] * 4 + [(32, 2, 2)] * 2,
             extractor_conv_bias=False, encoder_embed_dim=24, encoder_projection_dropout=0.0,
             encoder_pos_conv_kernel=16, encoder_pos_conv_groups=4, encoder_num_layers=3, encoder_num_heads=2,
             encoder_attention_dropout=0.0, encoder_ff_interm_features=48, encoder_ff_interm_dropout=0.0,
             encoder_dropout=0.0, encoder_layer_norm_first=False, encoder_layer_drop=0.0, aux_num_out=None)


@pytest.fixture(scope="module")
def tess(tmp_path_factory) -> Path:
    return get_adapter("tess").make_fake(tmp_path_factory.mktemp("tess"))


@pytest.fixture(autouse=True)
def empty_hub(tmp_path, monkeypatch):
    """No real weights from this machine's torch hub cache or environment leak into a test."""
    hub = torch.hub.get_dir()
    torch.hub.set_dir(str(tmp_path / "hub"))
    for name in ("WAVLM_BASE", "HUBERT_BASE", "WAV2VEC2_BASE"):
        monkeypatch.delenv(f"FER_BENCH_{name}_WEIGHTS", raising=False)
    yield tmp_path / "hub"
    torch.hub.set_dir(hub)


def _small_encoder(path: Path, model_type: str = "Wav2Vec2") -> torch.nn.Module:
    import torchaudio

    params = dict(SMALL)
    if model_type == "WavLM":
        params.update(encoder_num_buckets=16, encoder_max_distance=64)
        model = torchaudio.models.wavlm_model(**params)
    else:
        model = torchaudio.models.wav2vec2_model(**params)
    torch.save({"params": params, "model_type": model_type, "state_dict": model.state_dict()}, path)
    return model.eval()


def test_opensmile_functionals_are_cached_per_representation(tess, tmp_path):
    spec = feature_spec("egemaps")
    assert spec.input_size == (88,) and spec.extras["feature_set"] == "eGeMAPSv02"
    before = WORK["audio_features"]
    train = create_dataset("tess", "train", 0, spec, cache_dir=tmp_path, data_root=tess)
    computed = WORK["audio_features"] - before
    assert tuple(train.inputs.shape) == (len(train), 88) and computed >= len(train)
    assert torch.isfinite(train.inputs).all()
    assert abs(float(train.inputs.mean())) < 1e-3  # standardised with the train split's own statistics
    create_dataset("tess", "train", 0, spec, cache_dir=tmp_path, data_root=tess)
    assert WORK["audio_features"] - before == computed  # a second pass computes nothing
    lld = create_dataset("tess", "train", 0, feature_spec("egemaps_lld", frames=50), cache_dir=tmp_path,
                         data_root=tess)
    assert tuple(lld.inputs.shape) == (len(train), 25, 50)
    assert WORK["audio_features"] - before == 2 * computed  # another representation is another entry


def test_unknown_opensmile_feature_set_is_one_sentence(tmp_path):
    with pytest.raises(ValueError, match="unknown openSMILE feature set 'eGeMAPS_v9'"):
        feature_spec("egemaps", feature_set="eGeMAPS_v9")
    with pytest.raises(UserError, match="eGeMAPS_v9.*known: ComParE_2016"):
        audio_prep.feature_params("opensmile", feature_set="eGeMAPS_v9")


def test_heads_read_every_representation():
    for features, size in (("egemaps", (88,)), ("compare", (6373,)), ("mfcc", (40, 128)), ("compare_lld", (65, 128))):
        model = fer_models.create_model("voice_mlp", 5, features=features, hidden=16)
        assert model.input_spec.input_size == size
        assert model(fer_models.example_inputs(model))["logits"].shape == (2, 5)


@pytest.mark.parametrize("model_type", ["Wav2Vec2", "WavLM"])
def test_small_encoder_layers_through_the_dataset_path(tess, tmp_path, model_type):
    weights = tmp_path / "small.pt"
    encoder = _small_encoder(weights, model_type)
    name = "wavlm_base" if model_type == "WavLM" else "hubert_base"
    head = fer_models.create_model("voice_ssl_head", 7, features=name, weights=str(weights), hidden=8)
    assert head.input_spec.input_size == (SMALL["encoder_num_layers"] + 1, SMALL["encoder_embed_dim"])
    before = WORK["audio_features"]
    val = create_dataset("tess", "val", 0, head.input_spec, cache_dir=tmp_path, data_root=tess)
    assert tuple(val.inputs.shape[1:]) == (4, 24)
    out = head(val.inputs)
    assert out["logits"].shape == (len(val), 7)
    out["logits"].sum().backward()
    assert head.layer_logits.grad is not None  # the layer weights are learned
    computed = WORK["audio_features"] - before
    create_dataset("tess", "val", 0, head.input_spec, cache_dir=tmp_path, data_root=tess)
    assert WORK["audio_features"] - before == computed
    # the cached last layer is torchaudio's own extract_features output, averaged over time
    sample = get_adapter("tess").index(tess, tmp_path).samples[0]
    params = audio_prep.feature_params("ssl", encoder=name, weights=str(weights), cache_dir=tmp_path)
    cached = audio_prep.cached_features(Path(sample.path), tmp_path, params)
    wave = torch.from_numpy(audio_prep.load_audio(sample.path))[None]
    with torch.inference_mode():
        layers, _ = encoder.extract_features(wave)
    np.testing.assert_allclose(cached[-1], layers[-1][0].mean(0).numpy(), rtol=1e-4, atol=1e-4)


def test_long_utterances_are_read_in_chunks(tmp_path):
    weights = tmp_path / "small.pt"
    _small_encoder(weights)
    params = audio_prep.feature_params("ssl", encoder="wav2vec2_base", weights=str(weights))
    wave = np.random.default_rng(0).normal(size=int(2.5 * params["chunk_seconds"] * 16000)).astype(np.float32)
    assert audio_prep.ssl_layer_means(wave, params).shape == (4, 24)


def test_missing_unreadable_weights_and_bad_layer_are_one_sentence(tmp_path, empty_hub, monkeypatch):
    with pytest.raises(UserError, match=r"no local weights for speech encoder 'wavlm_base': put torchaudio's "
                                        r"wavlm_base.pth in .*hub.*checkpoints.*FER_BENCH_WAVLM_BASE_WEIGHTS"):
        audio_prep.feature_params("ssl", encoder="wavlm_base")
    # the hub cache torchaudio's bundle would have filled is found without being named
    (empty_hub / "checkpoints").mkdir(parents=True)
    _small_encoder(empty_hub / "checkpoints" / "wavlm_base.pth", "WavLM")
    assert feature_spec("wavlm_base").input_size == (4, 24)
    bad = tmp_path / "broken.pth"
    bad.write_bytes(b"not a checkpoint")
    monkeypatch.setenv("FER_BENCH_HUBERT_BASE_WEIGHTS", str(bad))
    with pytest.raises(ValueError, match=r"cannot read encoder weights .*broken.pth"):
        feature_spec("hubert_base")
    with pytest.raises(UserError, match=r"weights='/nowhere.pt': no such file"):
        audio_prep.feature_params("ssl", encoder="wav2vec2_base", weights="/nowhere.pt")
    with pytest.raises(ValueError, match=r"model.layer=4 is out of range: wavlm_base has layers 0..3"):
        fer_models.create_model("voice_ssl_head", 7, features="wavlm_base", layer=4)


def test_speaker_normalisation_uses_each_speakers_own_statistics():
    rng = np.random.default_rng(0)
    values = [rng.normal(5.0, 2.0, 10).astype(np.float32) for _ in range(6)] + \
             [rng.normal(-3.0, 0.5, 10).astype(np.float32) for _ in range(4)]
    subjects = ["a"] * 6 + ["b"] * 4
    out = np.stack(speaker_normalise(values, subjects, framewise=False))
    for group in (out[:6], out[6:]):
        np.testing.assert_allclose(group.mean(0), 0.0, atol=1e-5)
        np.testing.assert_allclose(group.std(0), 1.0, atol=1e-3)


def test_default_voice_spaces_drop_encoders_whose_weights_are_absent(tess, tmp_path, empty_hub):
    from bench.data import load_splits
    from bench.sweep import feasibility
    from bench.sweep.spaces import builtin_space_path, load_space

    adapter, indexed, _ = load_splits("tess", 0, tess, tmp_path)
    context = feasibility.Context("voice", adapter, indexed.samples)
    space = load_space(builtin_space_path("voice", "tess"))
    features = {p.key: p.values for p in feasibility.resolve(space, context).space.params}["model.features"]
    assert set(features) == {"compare", "egemaps"}
    (empty_hub / "checkpoints").mkdir(parents=True)
    _small_encoder(empty_hub / "checkpoints" / "wavlm_base.pth", "WavLM")
    resolved = feasibility.resolve(space, context)
    assert {p.key: p.values for p in resolved.space.params}["model.features"] == ("compare", "egemaps", "wavlm_base")
    assert "hubert_base" in resolved.line("tess") and "wavlm_base" not in resolved.line("tess")


@pytest.mark.parametrize("fixed,message", [
    ("model.feature_set: eGeMAPS_v9", "unknown openSMILE feature set 'eGeMAPS_v9'"),
    ("{model.features: wavlm_base, model.weights: WEIGHTS, model.layer: 9}", "model.layer=9 is out of range"),
])
def test_bad_feature_options_stop_a_search_with_one_sentence(tess, tmp_path, capsys, fixed, message):
    from bench.cli import main

    weights = tmp_path / "small.pt"
    _small_encoder(weights, "WavLM")
    fixed = fixed.replace("WEIGHTS", str(weights))
    space = tmp_path / "space.yaml"
    space.write_text("schema: 1\nmodality: voice\nbudget: {samples: 1, max_epochs: 1}\n"
                     f"fixed: {fixed if fixed.startswith('{') else '{model.name: voice_mlp, ' + fixed + '}'}\n"
                     "params:\n  model.hidden: {choice: [8, 16]}\n")
    if fixed.startswith("{"):
        space.write_text(space.read_text().replace("fixed: {", "fixed: {model.name: voice_ssl_head, "))
    code = main(["search", "voice", "--dataset", "tess", "--data-root", str(tess), "--space", str(space),
                 "--cache-dir", str(tmp_path / "cache"), "--results-dir", str(tmp_path / "results"), "--quiet"])
    err = capsys.readouterr().err
    assert code == 2 and message in err and err.count("\n") == 1


def _load_in_child(tess, cache, barrier, out):
    barrier.wait()
    before = WORK["audio_features"]
    ds = create_dataset("tess", "train", 0, feature_spec("compare"), cache_dir=cache, data_root=tess)
    out.put((WORK["audio_features"] - before, len(ds)))


def test_concurrent_trials_share_a_new_representation(tess, tmp_path):
    import multiprocessing as mp

    ctx = mp.get_context("fork")
    barrier, out = ctx.Barrier(2), ctx.Queue()
    procs = [ctx.Process(target=_load_in_child, args=(tess, tmp_path, barrier, out)) for _ in range(2)]
    for p in procs:
        p.start()
    results = [out.get(timeout=300) for _ in procs]
    for p in procs:
        p.join()
    (work_a, n), (work_b, _) = results
    assert work_a + work_b == n  # every file computed once between them, none twice


def test_a_claimed_entry_is_left_to_its_owner_until_published_or_abandoned(tmp_path):
    from bench.data.prep.media_cache import Busy, cached_entry, entry_path, wait_for_entry

    calls = []

    def compute():
        calls.append(1)
        return {"features": np.ones(3, np.float32)}

    marker = entry_path(tmp_path, "audio-x", "cd" * 32).with_suffix(".claim")
    marker.parent.mkdir(parents=True)
    marker.touch()
    with pytest.raises(Busy):
        cached_entry(tmp_path, "audio-x", "cd" * 32, compute, claim=True)
    marker.unlink()  # the owner gave up without publishing: the waiter computes it itself
    assert wait_for_entry(tmp_path, "audio-x", "cd" * 32, compute)["features"].sum() == 3 and calls == [1]
    assert not marker.exists()
    # a holder killed before it could release its claim does not make others wait
    import socket
    import subprocess

    dead = subprocess.Popen(["true"])
    dead.wait()
    other = entry_path(tmp_path, "audio-x", "ef" * 32).with_suffix(".claim")
    other.parent.mkdir(parents=True, exist_ok=True)
    other.write_text(f"{socket.gethostname()} {dead.pid}")
    assert cached_entry(tmp_path, "audio-x", "ef" * 32, compute, claim=True)["features"].sum() == 3


def test_audio_too_short_for_opensmile_is_skipped_counted_and_named(tess, tmp_path):
    import shutil

    import soundfile as sf

    root = tmp_path / "tess"
    shutil.copytree(tess, root)
    folder = next(root.rglob("YAF_*"))
    short = folder / f"YAF_tiny_{folder.name.split('_', 1)[1].lower()}.wav"
    sf.write(str(short), np.zeros(40, np.float32), 16000)
    splits = {split: create_dataset("tess", split, 1, feature_spec("egemaps"), cache_dir=tmp_path / "c",
                                    data_root=root) for split in ("train", "val", "test")}
    skipped = [s for d in splits.values() for s in d.skipped]
    assert [Path(s.path).name for s in skipped] == [short.name]
    assert "too short" in skipped[0].reason
    assert sum(len(d) for d in splits.values()) == 70  # every other file is there


TOY_KIND = '''
"""A toy voice representation: per-frame loudness and zero-crossing rate, 2 x frames."""
import numpy as np

from fer_models.spec import InputSpec
from fer_models.voice_features import SAMPLE_RATE, VoiceFeatureKind, register_voice_kind


@register_voice_kind
class LoudnessZcr(VoiceFeatureKind):
    word = "toy_loudness"

    def spec(self, name, *, frames, n_bins, weights, feature_set, extras, common):
        return InputSpec("voice", (2, frames), extras=extras, **common)

    def params(self, sample_rate=SAMPLE_RATE, **_):
        return {"kind": self.word, "sample_rate": sample_rate, "hop": 160, "max_seconds": 8.0, "v": 1}

    def request(self, spec, sample_rate, digest):
        return self.params(sample_rate), spec.input_size[-1], False

    def compute(self, wave, params):
        hop = params["hop"]
        frames = np.lib.stride_tricks.sliding_window_view(np.pad(wave, (0, hop)), hop)[::hop]
        loud = np.log(np.sqrt((frames ** 2).mean(1)) + 1e-6)
        zcr = (np.diff(np.sign(frames), axis=1) != 0).mean(1)
        return np.stack([loud, zcr]).astype(np.float32)
'''

TOY_SPACE = """
schema: 1
family: voice
budget: {samples: 1, max_epochs: 1}
fixed: {model.name: sk_logreg, model.features: toy_loudness, model.frames: 64}
params:
  model.C: {float: [0.1, 10.0], log: true}
"""


@pytest.mark.ray
def test_a_toy_voice_representation_from_a_plugin_module_runs_a_sweep(tmp_path, cache_dir, monkeypatch):
    """A new kind of voice feature is one module (registering one class) and a space naming it."""
    import json
    import os
    import sys

    from bench.cli import main
    from fer_models import voice_features

    plugin_dir = tmp_path / "plugin"
    plugin_dir.mkdir()
    (plugin_dir / "toy_voice_kind.py").write_text(TOY_KIND)
    (tmp_path / "toy.yaml").write_text(TOY_SPACE)
    monkeypatch.syspath_prepend(str(plugin_dir))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(plugin_dir), os.environ.get("PYTHONPATH")])))
    monkeypatch.setenv(PLUGINS_ENV, "toy_voice_kind")
    results = tmp_path / "results"
    import ray

    if ray.is_initialized():  # an earlier test's Ray: its workers were started without the plugin's path
        ray.shutdown()
    try:
        code = main(["search", "voice", "--dataset", "synthetic-voice", "--space", str(tmp_path / "toy.yaml"),
                     "--name", "toy-voice", "--cache-dir", str(cache_dir), "--results-dir", str(results), "--quiet"])
        assert code == 0
        record = json.loads((results / "records.jsonl").read_text().splitlines()[-1])
        assert record["model"] == "sk_logreg" and record["config"]["model.features"] == "toy_loudness"
        assert record["budget"]["errored"] == 0 and 0 <= record["test"]["uar"] <= 1
        spec = feature_spec("toy_loudness", frames=64)
        assert spec.input_size == (2, 64) and voice_features.spec_name(spec) == "toy_loudness"
    finally:  # the registries are process-wide: leave them as the other tests expect them
        voice_features.KINDS.pop("toy_loudness", None)
        voice_features.FEATURE_NAMES.pop("toy_loudness", None)
        voice_features._plugins_loaded.discard("toy_voice_kind")
        from bench.families import registry

        registry._loaded.discard("toy_voice_kind")
        sys.modules.pop("toy_voice_kind", None)
