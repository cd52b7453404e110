import optuna
import pytest

from bench.errors import UserError
from bench.spaces import builtin_space_path, load_space

VALID = """
schema: 1
modality: face
objective: {metric: val/uar, mode: max}
budget: {samples: 4, max_epochs: 3}
searcher: {name: optuna, sampler: tpe, seed: 0}
scheduler: {name: asha, grace_period: 1, reduction_factor: 2}
fixed: {data.image_size: 32}
params:
  model.name:       {choice: [fer_cnn, timm/resnet18]}
  model.attention:  {choice: [none, self], when: {model.name: timm/resnet18}}
  model.attn_heads: {int: [1, 4], when: {model.attention: self}}
  optim.lr:         {float: [1.0e-4, 1.0e-2], log: true}
"""


def write(tmp_path, text, name="space.yaml"):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_valid_space_loads_and_hashes(tmp_path):
    space = load_space(write(tmp_path, VALID))
    assert space.samples == 4 and space.max_epochs == 3
    assert [p.key for p in space.params] == ["model.name", "model.attention", "model.attn_heads", "optim.lr"]
    assert len(space.space_hash) == 12
    assert load_space(write(tmp_path, VALID + "\n# a comment\n", "b.yaml")).space_hash == space.space_hash
    changed = VALID.replace("1.0e-2", "3.0e-2")
    assert load_space(write(tmp_path, changed, "c.yaml")).space_hash != space.space_hash


def test_define_by_run_respects_conditions_with_a_real_optuna_study(tmp_path):
    space = load_space(write(tmp_path, VALID))
    fn = space.define_by_run({"data.dataset": "synthetic"})
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=1))
    seen = []
    for _ in range(30):
        trial = study.ask()
        constants = fn(trial)
        assert constants == {"data.image_size": 32, "data.dataset": "synthetic"}
        params = trial.params
        if params["model.name"] == "fer_cnn":
            assert "model.attention" not in params and "model.attn_heads" not in params
        elif params["model.attention"] == "none":
            assert "model.attn_heads" not in params
        else:
            assert 1 <= params["model.attn_heads"] <= 4
        assert 1e-4 <= params["optim.lr"] <= 1e-2
        seen.append(params["model.name"])
        study.tell(trial, 0.5)
    assert set(seen) == {"fer_cnn", "timm/resnet18"}


@pytest.mark.parametrize("mutation, message", [
    (("optim.lr:", "optim.learning_rate:"), "unknown key 'optim.learning_rate'"),
    (("fer_cnn,", "fer_cnnn,"), "unknown model 'fer_cnnn'.*Did you mean 'fer_cnn'"),
    (("timm/resnet18]", "timm/resnet1800]"), "unknown timm backbone 'resnet1800'"),
    (("schema: 1", "schema: 1\nsearch: {}"), "unknown key 'search'"),
    (("grace_period: 1", "grace: 1"), "unknown key scheduler.grace"),
    (("{float: [1.0e-4, 1.0e-2], log: true}", "{float: [1.0e-2, 1.0e-4]}"), "low 0.01 is above high"),
    (("{int: [1, 4], when: {model.attention: self}}", "{int: [1, 4], when: {model.dropout: 0.1}}"),
     "must be a param listed above it"),
    (("metric: val/uar", "metric: test/uar"), "must be a validation metric"),
    (("samples: 4", "samples: 0"), "'budget.samples' must be a positive integer"),
    (("{choice: [none, self],", "{chose: [none, self],"), "unknown key 'chose'"),
])
def test_malformed_spaces_name_file_and_field(tmp_path, mutation, message):
    path = write(tmp_path, VALID.replace(*mutation))
    with pytest.raises(UserError, match=message) as info:
        load_space(path)
    assert str(path) in str(info.value)


def test_invalid_yaml_names_the_line(tmp_path):
    path = write(tmp_path, "schema: 1\nparams: {model.name: [unclosed\n")
    with pytest.raises(UserError, match=r"not valid YAML at line \d+"):
        load_space(path)


def test_yaml_cannot_run_code(tmp_path):
    path = write(tmp_path, "!!python/object/apply:os.system ['echo hi']\n")
    with pytest.raises(UserError, match="not valid YAML"):
        load_space(path)


def test_extends_one_level(tmp_path):
    write(tmp_path, VALID, "base.yaml")
    child = write(tmp_path, "extends: base.yaml\nbudget: {samples: 9}\nparams:\n  optim.lr: {float: [0.001, 0.002]}\n"
                  "  model.attn_heads: null\n", "child.yaml")
    space = load_space(child)
    assert space.samples == 9 and space.max_epochs == 3
    assert [p.key for p in space.params] == ["model.name", "model.attention", "optim.lr"]
    grandchild = write(tmp_path, "extends: child.yaml\n", "grandchild.yaml")
    with pytest.raises(UserError, match="one level only"):
        load_space(grandchild)


def test_builtin_spaces_and_dataset_override_load():
    assert builtin_space_path("face", "synthetic").name == "synthetic.yaml"
    assert builtin_space_path("face", "raf").name == "raf.yaml"
    assert builtin_space_path("face", "my-faces").name == "face.yaml"  # no space of its own: the zoo
    face = load_space(builtin_space_path("face"))
    assert face.modality == "face" and face.metric == "val/uar"
    synthetic = load_space(builtin_space_path("face", "synthetic"))
    assert synthetic.fixed["data.image_size"] == 48 and synthetic.samples < face.samples


def test_time_budget_in_a_space_and_durations(tmp_path):
    from bench.budget import asha_epochs_per_trial, parse_duration

    assert [parse_duration(t) for t in ("90", "90s", "30m", "2h", "1h30m", "1.5m")] == [90, 90, 1800, 7200, 5400, 90]
    space = load_space(write(tmp_path, VALID.replace("max_epochs: 3}", "max_epochs: 3, time_budget: 20m}")))
    assert space.time_budget_for("cpu") == space.time_budget_for("gpu") == 1200
    per_device = load_space(write(tmp_path, VALID.replace("max_epochs: 3}", "max_epochs: 3, time_budget: {gpu: 1h}}")))
    assert per_device.time_budget_for("gpu") == 3600 and per_device.time_budget_for("cpu") is None
    for bad, message in (("time_budget: 0", "more than 0"), ("time_budget: soon", "a duration like"),
                         ("time_budget: {tpu: 1h}", "takes cpu and gpu")):
        with pytest.raises(UserError, match=message):
            load_space(write(tmp_path, VALID.replace("max_epochs: 3}", f"max_epochs: 3, {bad}}}")))
    # ASHA: every trial to the grace period, 1/factor of them on to each next rung
    assert asha_epochs_per_trial(30, 3, 3) == pytest.approx(3 + 6 / 3 + 18 / 9 + 3 / 27)
    assert asha_epochs_per_trial(30, 3, 3, "fifo") == 30
