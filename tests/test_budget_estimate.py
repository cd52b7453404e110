"""The sweep's expected duration: measured on this machine through the trial's own pipeline, replayed
under ASHA's rule, and advice when it does not fit the time budget (no timing asserted)."""
import pytest

from bench.sweep.budget import STARTUP_S, asha_epochs_per_trial, describe, estimate_sweep, format_duration
from bench.sweep.spaces import load_space

SPACE = """
schema: 1
modality: face
budget: {samples: 6, max_epochs: 9}
scheduler: {name: asha, grace_period: 1, reduction_factor: 3}
fixed: {data.image_size: 32}
params:
  model.name:       {choice: [fer_cnn, timm/resnet10t]}
  optim.lr:         {float: [1.0e-3, 1.0e-2], log: true}
  train.batch_size: {choice: [32, 64]}
"""


@pytest.mark.slow  # ~50 s on a busy 2-core machine, most of it generating the synthetic faces
def test_estimate_times_each_model_and_says_how_to_fit_the_budget(tmp_path, cache_dir):
    path = tmp_path / "space.yaml"
    path.write_text(SPACE)
    space = load_space(path)
    est = estimate_sweep(space, samples=6, max_epochs=9, extra_fixed={"data.dataset": "synthetic", "train.seed": 0,
                                                                       "train.max_epochs": 9},
                         cache_dir=cache_dir, data_root=None, cpus_per_trial=1, gpus_per_trial=0)
    assert set(est.per_model) == {"fer_cnn", "timm/resnet10t"} and all(v > 0 for v in est.per_model.values())
    # ASHA's rule replayed: at least its promotion ratio's epochs (more: the first trials at a rung go on)
    assert asha_epochs_per_trial(9, 1, 3) <= est.epochs_per_trial <= 9 and est.device == "cpu"
    assert est.setup_seconds > 0 and est.concurrent >= 1
    assert est.seconds > est.epoch_seconds * est.epochs_per_trial * 6 / est.concurrent
    roomy = describe(est, time_budget_s=est.seconds * 2, samples=6, max_epochs=9)
    assert roomy[0].startswith("Estimated sweep time: about") and "an estimate" in roomy[0]
    assert "should end within it" in roomy[1]
    # half of what the trials themselves need (the fixed start-up is not shortened by fewer trials)
    half = STARTUP_S + max(est.seconds - STARTUP_S, 2.0) / 2
    tight = describe(est, time_budget_s=half, samples=6, max_epochs=9)[1]
    assert f"would take about {format_duration(est.seconds)} on this CPU" in tight
    assert "--time-budget" in tight and "--samples" in tight and "--gpus-per-trial 1" in tight
