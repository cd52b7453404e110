"""The search-family registry: every built-in family is consistent, and a new family is one module
plus its space file (a toy family from a temporary plugin module runs a real sweep)."""
from __future__ import annotations

import json
import os
import sys

import pytest

import fer_models
from bench import families
from bench.cli import main
from bench.data import DATASETS
from bench.errors import UserError
from bench.families import FAMILIES, SearchFamily, get_family, register_family
from bench.sweep.spaces import builtin_space_path, load_space


@pytest.mark.parametrize("name", list(FAMILIES))
def test_every_family_has_a_loading_space_data_and_models(name):
    family = get_family(name)
    space = load_space(builtin_space_path(name))
    assert space.family == name
    assert any(adapter.modality == family.data_modality for adapter in DATASETS.values()), \
        f"no registered dataset holds {family.data_modality} data for `search {name}`"
    for model in space.model_names():  # what the space searches is what the family searches
        assert fer_models.model_entry(str(model)).modality == family.model_modality
    for dataset_space in sorted((family.spaces_folder() / family.space_dir).glob("*.yaml")):
        assert load_space(builtin_space_path(name, dataset_space.stem)).path == str(dataset_space)


def test_unknown_family_is_one_sentence_with_a_close_match():
    with pytest.raises(UserError) as err:
        get_family("fcae")
    message = str(err.value)
    assert "'fcae'" in message and "'face'" in message and "\n" not in message


def test_a_family_registers_once():
    with pytest.raises(ValueError, match="already registered"):
        register_family(SearchFamily("face", data_modality="face"))


def test_mic_trials_get_the_identity_probe_and_face_trials_none():
    assert families.family_of_model("mic").epoch_metrics is not None
    assert families.family_of_model("fer_cnn").epoch_metrics is None


PLUGIN = '''
"""A toy search family: face models on face data, with a space of its own beside this file."""
from pathlib import Path

from bench.families import SearchFamily, register_family

register_family(SearchFamily("toyface", data_modality="face", model_modality="face",
                             space_root=Path(__file__).parent / "spaces"))
'''

TOY_SPACE = """
schema: 1
modality: toyface
budget: {samples: 2, max_epochs: 2}
fixed: {data.image_size: 32, model.name: fer_cnn}
params:
  optim.lr: {float: [1.0e-3, 1.0e-2], log: true}
"""


@pytest.mark.ray
def test_a_toy_family_from_a_plugin_module_runs_a_sweep(tmp_path, cache_dir, monkeypatch):
    plugin_dir = tmp_path / "plugin"
    (plugin_dir / "spaces").mkdir(parents=True)
    (plugin_dir / "toy_family_plugin.py").write_text(PLUGIN)
    (plugin_dir / "spaces" / "toyface.yaml").write_text(TOY_SPACE)
    monkeypatch.syspath_prepend(str(plugin_dir))
    # Ray workers started by this test find the module too (trials need no plugin, but may look)
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(plugin_dir), os.environ.get("PYTHONPATH")])))
    monkeypatch.setenv(families.PLUGINS_ENV, "toy_family_plugin")
    results = tmp_path / "results"
    try:
        code = main(["search", "toyface", "--dataset", "synthetic", "--samples", "1", "--max-epochs", "1",
                     "--name", "toy", "--cache-dir", str(cache_dir), "--results-dir", str(results), "--quiet"])
        assert code == 0
        record = json.loads((results / "records.jsonl").read_text().splitlines()[-1])
        assert record["modality"] == "toyface" and record["model"] == "fer_cnn"
        assert record["space_path"] == str(plugin_dir / "spaces" / "toyface.yaml")
        assert record["budget"]["trials"] == 1 and record["budget"]["max_epochs"] == 1
    finally:  # the registry is process-wide: leave it as the other tests expect it
        FAMILIES.pop("toyface", None)
        families.registry._loaded.discard("toy_family_plugin")
        sys.modules.pop("toy_family_plugin", None)


def test_a_plugin_that_does_not_import_is_one_error(monkeypatch, capsys):
    monkeypatch.setenv(families.PLUGINS_ENV, "no_such_fer_bench_plugin")
    try:
        assert main(["search", "face", "--dataset", "synthetic"]) == 2
        err = capsys.readouterr().err
        assert "no_such_fer_bench_plugin" in err and err.count("\n") == 1
    finally:
        families.registry._loaded.discard("no_such_fer_bench_plugin")


def test_plugin_runtime_env_ships_local_modules_and_not_installed_ones(tmp_path, monkeypatch):
    from bench.sweep.tune_backend import plugin_runtime_env

    (tmp_path / "my_local_fer_plugin.py").write_text('"""nothing to register"""\n')
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("FER_BENCH_PLUGINS", "my_local_fer_plugin, timm.layers")
    try:
        env = plugin_runtime_env()
    finally:
        sys.modules.pop("my_local_fer_plugin", None)
        families.registry._loaded.discard("my_local_fer_plugin")
    assert env["env_vars"] == {"FER_BENCH_PLUGINS": "my_local_fer_plugin,timm.layers"}
    assert [m.__name__ for m in env["py_modules"]] == ["my_local_fer_plugin"]  # timm is installed
    monkeypatch.delenv("FER_BENCH_PLUGINS")
    assert plugin_runtime_env() == {}
