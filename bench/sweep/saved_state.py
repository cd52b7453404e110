"""Tune's saved experiment state in a local run folder, checked before a resume.

Tune writes its state files (the experiment state, the searcher's, the search generator's) in the
driver's staging folder (``<Ray temp dir>/session_*/artifacts/<start>/<run>/driver_artifacts``)
and copies them into the run folder in a background thread. A driver killed during that copy left a
file cut short (measured: 1 of 6 SIGKILLed k-fold voice sweeps, a 0-byte ``search_gen_state``),
and Ray 2.60's restore then logged "Failed to restore the run state" and started the sweep again
from nothing in the same folder: every trial's work was dropped and the record counted the new
trials only. ``repair_saved_state`` puts back a whole copy first: the dead session's staged file of
the same name (the name holds the run's start time) when this machine still has it, else an
earlier run's file of the same kind (a resume from that state), else it refuses in one sentence.
A staged file newer than the run folder's whole one (a save the copy had not reached) is put back
too: the resume then starts from the killed driver's last save, as Ray's copy would have left it.
Each trial's result.json is copied the same way (one was left empty, its 22 rows only in the staging
folder), and its rows reach the run folder only with that copy: where the dead session's staged
result.json holds the run folder's rows and more, it is put back, so the rows the killed driver
never copied are kept too. Object stores write an object whole, so only local folders are checked."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

from bench.errors import UserError
from bench.sweep.trials import whole_lines

# Tune's state files in a run folder; Ray reads the newest of each kind (the largest name)
STATE_PATTERNS = ("experiment_state-*.json", "search_gen_state-*.json", "searcher-state-*.pkl")


def repair_saved_state(run_dir: str | Path, ray_temp_dir: str | Path | None = None) -> list[str]:
    """Make the newest file of each kind in ``run_dir`` whole again where it is not; says what it
    did, a line per file. ``ray_temp_dir``: where Ray keeps its sessions (default: Ray's)."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        return []
    if ray_temp_dir is None:
        from ray._common.utils import get_default_ray_temp_dir

        ray_temp_dir = get_default_ray_temp_dir()
    states = sorted(run_dir.glob("experiment_state-*.json"))
    if not states:
        return []  # Tune.can_restore says so first
    # the staging folder is named by the run's first start, which the first state file's name holds
    started = states[0].stem.removeprefix("experiment_state-")
    found = Path(ray_temp_dir).glob(f"session_*/artifacts/{started}/{run_dir.name}/driver_artifacts")
    # session_latest is a link to one of them; the newest first; only this folder's (not a copy's)
    staging = sorted({path.resolve() for path in found if _stages(path, run_dir)},
                     key=lambda path: path.stat().st_mtime, reverse=True)
    done = _repair_results(run_dir, staging)
    for pattern in STATE_PATTERNS:
        files = sorted(run_dir.glob(pattern))
        if not files:
            continue
        newest = files[-1]
        staged = next((folder / newest.name for folder in staging if (folder / newest.name).is_file()
                       and _whole(folder / newest.name)), None)
        if _whole(newest):
            # the killed driver's last save, which its copy had not reached: Ray's copy, completed
            if staged is not None and staged.stat().st_mtime > newest.stat().st_mtime \
                    and staged.read_bytes() != newest.read_bytes():
                shutil.copyfile(staged, newest)
                done.append(f"{newest.name}: the killed sweep's last save, put back from {staged.parent}")
        elif staged is not None:
            shutil.copyfile(staged, newest)
            done.append(f"{newest.name}: cut short when the sweep was killed; put back from {staged.parent}")
        elif any(_whole(path) for path in files[:-1]):
            newest.unlink()  # Ray then reads the newest earlier one
            done.append(f"{newest.name}: cut short when the sweep was killed; the resume goes on from an "
                        f"earlier run's state")
        else:
            raise UserError(f"Ray's saved state {newest} was cut short when the sweep was killed, and no whole "
                            f"copy is left; the trials' checkpoints are in {run_dir}, but Tune cannot resume "
                            f"without that file: start the sweep again under a new --name")
    return done


def _stages(staging: Path, run_dir: Path) -> bool:
    """Whether the staging folder ``staging`` was copied to ``run_dir``: its experiment state names
    that storage folder (inside each trial's pickled StorageContext). A copy of the run folder
    elsewhere shares the run's name and start, and a resume of it stages under the same name."""
    storage = str(run_dir.parent.resolve()).encode()
    for state in staging.glob("experiment_state-*.json"):
        try:
            trials = json.loads(state.read_bytes())["trial_data"]
            return any(storage in bytes.fromhex(json.loads(trial)["storage"]["value"]) for trial, _ in trials)
        except (ValueError, KeyError, TypeError, OSError):
            continue
    return False


def _whole(path: Path) -> bool:
    """Whether the state file at ``path`` loads: JSON, or a pickle (search_gen_state's .json is one)."""
    data = path.read_bytes()
    if not data:
        return False
    try:
        json.loads(data)
        return True
    except ValueError:
        pass
    from ray import cloudpickle

    try:
        cloudpickle.loads(data)  # Ray's own file, which its restore unpickles in any case
        return True
    except Exception:  # truncated: EOFError, UnpicklingError, ... whatever the cut left
        return False


def _repair_results(run_dir: Path, staging: list[Path]) -> list[str]:
    """Each trial's result.json replaced by the longest staged copy that holds its whole rows and more."""
    done = []
    for trial_dir in sorted(path for path in run_dir.iterdir() if path.is_dir()):
        rows = _whole_rows(trial_dir / "result.json")
        longest = rows
        for folder in staging:
            staged_rows = _whole_rows(folder / trial_dir.name / "result.json")
            if len(staged_rows) > len(longest) and staged_rows[:len(rows)] == rows:
                longest = staged_rows
        if len(longest) > len(rows):
            (trial_dir / "result.json").write_text("".join(row + "\n" for row in longest))
            trial = "_".join(trial_dir.name.split("_")[:3])  # fer_trial_<id>
            done.append(f"{trial}: {len(longest) - len(rows)} reported epoch(s) the killed sweep had not "
                        f"copied to its run folder, put back from Ray's staging folder")
    return done


def _whole_rows(path: Path) -> list[str]:
    """The whole lines of the result.json at ``path`` (none when it is missing)."""
    try:
        return whole_lines(path.read_text(encoding="utf-8", errors="replace"))
    except OSError:
        return []
