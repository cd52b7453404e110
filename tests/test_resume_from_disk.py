"""A resume after a driver died between Tune's checkpoint deletion and its next copy of the
experiment state (and result.json) to the run folder: the saved state names a checkpoint that is
gone, and the newest checkpoints are named by nothing. Real Ray Tune in this process, with the
sweep's own RunConfig (num_to_keep=1, best on the metric) and a counting trainable that writes
fer-bench's report file into each checkpoint as the sweep's trials do: what matters here is Tune's
bookkeeping, not a model."""
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.ray

STATE_FILES = ("experiment_state-", "searcher-state-", "search_gen_state-")


def counting_trial(config):
    """Reports iterations start+1 .. the number in config["until"] (re-read each time), each with a
    checkpoint holding its iteration; the score falls, so the kept best stays iteration 1 and each
    newer checkpoint deletes the previous one. Its first run copies Tune's saved experiment state
    and its result.json at iteration 3 to config["stale"]: what a driver killed later leaves behind."""
    from ray import tune

    from bench.sweep.ray_trial import write_report_file

    start = 0
    checkpoint = tune.get_checkpoint()
    if checkpoint is not None:
        with checkpoint.as_directory() as directory:
            start = json.loads((Path(directory) / "state.json").read_text())["iteration"]
    iteration = start
    while iteration < int(Path(config["until"]).read_text()):
        iteration += 1
        with tempfile.TemporaryDirectory() as directory:
            (Path(directory) / "state.json").write_text(json.dumps({"iteration": iteration}))
            metrics = {"score": -iteration, "resumed_from": start, "epoch": iteration}
            write_report_file(Path(directory), metrics)
            tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(directory))
        if start == 0 and iteration == 3:
            time.sleep(1.0)  # Tune saves its state after each checkpoint (num_to_keep=1): let it land
            copy_state(Path(tune.get_context().get_trial_dir()).parent, Path(config["stale"]))


def copy_state(run_dir: Path, to: Path) -> None:
    """The experiment state files and each trial's result.json (Tune copies them together)."""
    for path in [*run_dir.iterdir(), *run_dir.glob("*/result.json")]:
        if path.is_file() and (path.name.startswith(STATE_FILES) or path.name == "result.json"):
            target = to / path.relative_to(run_dir)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, target)


@pytest.fixture
def one_cpu_ray():
    import ray

    from bench.sweep import tune_backend

    if ray.is_initialized():  # an earlier test's, in this same process
        ray.shutdown()
    tune_backend.connect(None, num_cpus=1)
    # Ray's workers cannot import a test module: the trainable travels by value
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    yield
    ray.cloudpickle.unregister_pickle_by_value(sys.modules[__name__])
    ray.shutdown()


def rows(run_dir: Path) -> list[dict]:
    (result,) = run_dir.glob("counting_trial_*/result.json")
    return [json.loads(line) for line in result.read_text().splitlines() if line.strip()]


def test_a_trial_whose_saved_checkpoint_was_deleted_resumes_from_the_newest_on_disk(tmp_path, one_cpu_ray):
    import ray
    from ray import tune

    from bench.sweep.run_settings import SweepSettings, run_config
    from bench.sweep.tune_backend import _resuming_from_disk, connect

    until, stale = tmp_path / "until", tmp_path / "stale"
    until.write_text("5")
    settings = SweepSettings(name="stale", storage=str(tmp_path / "runs"), samples=1, max_epochs=8)
    tuner = tune.Tuner(counting_trial, param_space={"until": str(until), "stale": str(stale)},
                       tune_config=tune.TuneConfig(num_samples=1),
                       run_config=run_config(settings, "score", "max", verbose=0))
    assert not tuner.fit().errors
    run_dir = tmp_path / "runs" / "stale"
    assert [r["training_iteration"] for r in rows(run_dir)] == [1, 2, 3, 4, 5]
    # its last saved state is the one from iteration 3, whose latest checkpoint Tune deleted when
    # iteration 4's arrived (the best, iteration 1's, is kept)
    for path in run_dir.iterdir():
        if path.is_file() and path.name.startswith(STATE_FILES):
            path.unlink()
    copy_state(stale, run_dir)
    (trial_dir,) = run_dir.glob("counting_trial_*")
    assert sorted(p.name for p in trial_dir.glob("checkpoint_*")) == ["checkpoint_000000", "checkpoint_000004"]
    until.write_text("8")
    control = tmp_path / "control"
    shutil.copytree(tmp_path / "runs", control)

    # Ray alone cannot restore it: the trial fails on every retry (if Ray learns to, drop the callback)
    plain = tune.Tuner.restore(str(control / "stale"), counting_trial, resume_errored=True).fit()
    assert len(plain.errors) == 1 and "does not exist on storage anymore" in str(plain.errors[0])

    # the resume is a new process: a Ray session of its own, whose staging folder (where Tune writes
    # result.json before copying it to the run folder) holds nothing of the earlier runs'
    ray.shutdown()
    connect(None, num_cpus=1)
    results = _resuming_from_disk(tune.Tuner.restore(str(run_dir), counting_trial, resume_errored=True)).fit()
    assert not results.errors
    history = rows(run_dir)
    iterations = [r["training_iteration"] for r in history]
    # the resumed run went on from iteration 5's checkpoint, which nothing Tune saved named; its row
    # is written back from the checkpoint's report file; iteration 4's row and checkpoint died with
    # the driver (never copied / deleted), and no iteration is reported twice
    assert iterations[-4:] == [5, 6, 7, 8] and 4 not in iterations
    assert iterations == sorted(set(iterations)) and set(iterations[:-4]) <= {1, 2, 3}
    assert [r["resumed_from"] for r in history[-4:]] == [0, 5, 5, 5]
    assert history[-4]["checkpoint_dir_name"] == "checkpoint_000004"
    # Tune's bookkeeping is whole again: the best (iteration 1) and the newest kept, nothing else
    (result,) = results
    assert Path(result.get_best_checkpoint("score", "max").path).name == "checkpoint_000000"
    assert Path(result.checkpoint.path).name == "checkpoint_000007"
    assert sorted(p.name for p in trial_dir.glob("checkpoint_*")) == ["checkpoint_000000", "checkpoint_000007"]
