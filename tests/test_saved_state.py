"""Tune's state files cut short by a kill during Ray's copy to the run folder, made whole before a
resume (``bench.sweep.saved_state``). The files are written as Ray writes them (JSON, cloudpickle)
in a run folder and a Ray temp folder of the test's own."""
import json

import pytest
from ray import cloudpickle

from bench.errors import UserError
from bench.sweep.saved_state import repair_saved_state

STARTED = "2026-12-07_19-34-30"
TRIAL = "fer_trial_4777c492_2_data_dataset=synthetic-voice_2026-12-07_19-34-32"


def write_state(folder, searcher_bytes=None, rows=3, storage=None):
    """Tune's files of run k25 in ``folder`` (a run folder, or a staging folder copied to ``storage``)."""
    folder.mkdir(parents=True, exist_ok=True)
    # as Tune saves a trial: JSON, its StorageContext pickled (hex) inside, naming the storage folder
    context = cloudpickle.dumps({"storage_fs_path": str(storage or folder.parent)}).hex()
    trial = json.dumps({"trial_id": "4777c492", "storage": {"_type": "CLOUDPICKLE_FALLBACK", "value": context}})
    (folder / f"experiment_state-{STARTED}.json").write_text(json.dumps({"trial_data": [[trial, "{}"]],
                                                                          "runner_data": {}}))
    gen = cloudpickle.dumps({"counter": 2, "finished": False})  # Ray pickles this .json file
    (folder / f"search_gen_state-{STARTED}.json").write_bytes(gen if searcher_bytes is None else searcher_bytes)
    (folder / TRIAL).mkdir(exist_ok=True)
    lines = [json.dumps({"training_iteration": i, "val/uar": 0.1 * i}) for i in range(1, rows + 1)]
    (folder / TRIAL / "result.json").write_text("".join(line + "\n" for line in lines))
    return gen


def staging(ray_tmp, session="session_2026-12-07_19-34-25_1_8864"):
    return ray_tmp / session / "artifacts" / STARTED / "k25" / "driver_artifacts"


def rows(path):
    return [json.loads(line)["training_iteration"] for line in path.read_text().splitlines()]


def test_a_state_file_and_a_result_file_cut_short_are_put_back_from_the_dead_sessions_staging(tmp_path):
    run, ray_tmp = tmp_path / "runs" / "k25", tmp_path / "ray"
    whole = write_state(staging(ray_tmp), rows=5, storage=run.parent)  # the dead driver's: 2 rows not copied
    write_state(run, searcher_bytes=b"", rows=3)  # the kill cut the copy of search_gen_state
    # neither another sweep's of the same name (another start) nor a copy's of this one (another folder)
    write_state(ray_tmp / "session_x" / "artifacts" / "2026-01-01_00-00-00" / "k25" / "driver_artifacts", rows=9,
                storage=run.parent)
    write_state(staging(ray_tmp, "session_2026-12-07_20-00-00_1_9999"), rows=7, storage=tmp_path / "copy")

    done = repair_saved_state(run, ray_temp_dir=ray_tmp)
    assert (run / f"search_gen_state-{STARTED}.json").read_bytes() == whole
    assert rows(run / TRIAL / "result.json") == [1, 2, 3, 4, 5]
    assert len(done) == 2 and any("2 reported epoch(s)" in line for line in done)
    assert repair_saved_state(run, ray_temp_dir=ray_tmp) == []  # whole now: nothing more to do


def test_a_staged_result_file_that_is_not_the_same_trials_history_is_not_used(tmp_path):
    run, ray_tmp = tmp_path / "runs" / "k25", tmp_path / "ray"
    write_state(run, rows=3)
    write_state(staging(ray_tmp), rows=0, storage=run.parent)
    (staging(ray_tmp) / TRIAL / "result.json").write_text("".join(
        json.dumps({"training_iteration": i, "val/uar": 0.5}) + "\n" for i in range(1, 7)))
    assert repair_saved_state(run, ray_temp_dir=ray_tmp) == []
    assert rows(run / TRIAL / "result.json") == [1, 2, 3]


def test_without_a_staged_copy_an_earlier_runs_state_is_used_else_one_sentence(tmp_path):
    run, ray_tmp = tmp_path / "runs" / "k25", tmp_path / "ray"
    write_state(run, searcher_bytes=cloudpickle.dumps({"counter": 2})[:-5])  # cut inside the pickle
    with pytest.raises(UserError, match=f"search_gen_state-{STARTED}.json was cut short.*start the sweep again"):
        repair_saved_state(run, ray_temp_dir=ray_tmp)

    earlier = run / "search_gen_state-2026-12-07_18-00-00.json"  # a resume's files carry its own start
    earlier.write_bytes(cloudpickle.dumps({"counter": 1}))
    (done,) = repair_saved_state(run, ray_temp_dir=ray_tmp)
    assert "earlier run's state" in done
    assert sorted(p.name for p in run.glob("search_gen_state-*")) == [earlier.name]


def test_a_save_the_killed_copy_had_not_reached_is_put_back_and_an_older_staging_is_not(tmp_path):
    import os

    run, ray_tmp = tmp_path / "runs" / "k25", tmp_path / "ray"
    write_state(run, rows=3)
    state = run / f"experiment_state-{STARTED}.json"
    last_save = staging(ray_tmp) / state.name
    write_state(staging(ray_tmp), rows=3, storage=run.parent)
    last_save.write_text(state.read_text().replace('"runner_data": {}', '"runner_data": {"_iteration": 9}'))
    before = state.stat().st_mtime
    os.utime(last_save, (before + 5, before + 5))  # saved after the run folder's copy
    (done,) = repair_saved_state(run, ray_temp_dir=ray_tmp)
    assert "last save" in done and state.read_bytes() == last_save.read_bytes()

    os.utime(last_save, (before - 5, before - 5))  # a staging older than the run folder's copy
    state.write_text(state.read_text().replace('"_iteration": 9', '"_iteration": 12'))
    assert repair_saved_state(run, ray_temp_dir=ray_tmp) == [] and '"_iteration": 12' in state.read_text()
