"""Per-device sections of a search space (``device: {cpu: ..., gpu: ...}``) and the scheduler's
``data_fraction``: how they resolve, their one-sentence errors, and the shipped large-set spaces."""
import pytest

from bench.errors import UserError
from bench.sweep.spaces import builtin_space_path, load_space

BASE = """
schema: 1
modality: face
budget: {samples: 24, max_epochs: 30, time_budget: {cpu: 20m, gpu: 1h}}
scheduler: {name: asha, grace_period: 3, reduction_factor: 3}
fixed: {data.image_size: 48}
lists:
  backbones: [timm/resnet18, timm/resnet10t]
params:
  model.name:      {choice: [fer_cnn, $backbones]}
  model.attention: {choice: [none, self], when: {model.name: $backbones}}
  optim.lr:        {float: [1.0e-4, 1.0e-2], log: true}
"""
DEVICE = """
device:
  cpu:
    budget: {samples: 8, time_budget: 40m}
    fixed: {data.image_size: 40}
    params:
      model.name:      {choice: [fer_cnn]}
      model.attention: null
"""


def write(tmp_path, text: str, name: str = "s.yaml"):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_the_device_section_merges_over_the_space(tmp_path):
    path = write(tmp_path, BASE + DEVICE)
    cpu, gpu, plain = load_space(path, "cpu"), load_space(path, "gpu"), load_space(path)
    assert cpu.model_names() == ["fer_cnn"] and [p.key for p in cpu.params] == ["model.name", "optim.lr"]
    assert (cpu.samples, cpu.max_epochs, cpu.fixed["data.image_size"]) == (8, 30, 40)
    assert cpu.time_budget_for("cpu") == 2400
    assert gpu.model_names() == plain.model_names() == ["fer_cnn", "timm/resnet18", "timm/resnet10t"]
    assert gpu.time_budget_for("gpu") == 3600 and gpu.space_hash == plain.space_hash
    assert cpu.space_hash != gpu.space_hash  # a resume compares the space it ran
    assert plain.space_hash == load_space(write(tmp_path, BASE, "b.yaml")).space_hash
    assert cpu.scheduler["data_fraction"] == "auto"


@pytest.mark.parametrize("text,match", [
    ("device: {tpu: {budget: {samples: 2}}}", "device takes cpu and gpu, not 'tpu'"),
    ("device: [cpu]", "field 'device' must be a mapping"),
    ("device: {cpu: {objective: {metric: val/accuracy}}}", "device.cpu cannot set 'objective'"),
    ("device: {cpu: 3}", "device.cpu must be a mapping"),
    ("device: {gpu: {params: [model.name]}}", "device.gpu.params must be a mapping"),
    ("device: {cpu: {params: {optim.lr: {float: [1, 0]}}}}", "low 1 is above high 0"),
])
def test_bad_device_sections_are_one_sentence(tmp_path, text, match):
    path = write(tmp_path, BASE + text + "\n")
    with pytest.raises(UserError, match=match) as err:
        load_space(path, "cpu")
    assert "\n" not in str(err.value) and str(path) in str(err.value)


@pytest.mark.parametrize("value", ["2", "0", "-0.1", "sometimes", "true"])
def test_data_fraction_must_be_auto_off_or_a_fraction(tmp_path, value):
    path = write(tmp_path, BASE.replace("reduction_factor: 3}", f"reduction_factor: 3, data_fraction: {value}}}"))
    with pytest.raises(UserError, match=r"scheduler.data_fraction must be auto, off or a number in \(0, 1\]"):
        load_space(path)


def test_data_fraction_needs_asha(tmp_path):
    path = write(tmp_path, BASE.replace("scheduler: {name: asha, grace_period: 3, reduction_factor: 3}",
                                        "scheduler: {name: fifo, data_fraction: 0.2}"))
    with pytest.raises(UserError, match="data_fraction needs the asha scheduler"):
        load_space(path)
    assert load_space(write(tmp_path, BASE.replace("reduction_factor: 3}", "reduction_factor: 3, data_fraction: 0.25}"),
                            "ok.yaml")).scheduler["data_fraction"] == 0.25


@pytest.mark.parametrize("dataset", ["fer2013", "ferplus", "raf"])
def test_large_set_spaces_search_cheap_models_on_a_cpu_and_the_zoo_on_a_gpu(dataset):
    cpu = load_space(builtin_space_path("face", dataset), "cpu")
    gpu = load_space(builtin_space_path("face", dataset), "gpu")
    assert cpu.scheduler["data_fraction"] == gpu.scheduler["data_fraction"] == "auto"
    assert cpu.time_budget_for("cpu") == 40 * 60 and gpu.time_budget_for("gpu") == 3600
    assert "timm/resnet18" not in cpu.model_names() and "fer_cnn" in cpu.model_names()
    assert {"fer_cnn", "timm/resnet18"} <= set(gpu.model_names()) and len(gpu.model_names()) >= 4
    assert cpu.samples < gpu.samples and cpu.max_epochs < gpu.max_epochs
    assert cpu.fixed["data.image_size"] <= 64
