"""Where data, cache and results live: every local path a trial receives is absolute."""
import os
from pathlib import Path

from bench import paths


def test_a_relative_data_root_becomes_absolute(tmp_path, monkeypatch):
    # Ray runs each trial with its trial folder as the working directory: a relative
    # --data-root such as ../shared/data would point elsewhere there.
    (tmp_path / "data").mkdir()
    monkeypatch.chdir(tmp_path)
    root = paths.data_root("data")
    assert Path(root).is_absolute() and Path(root) == tmp_path / "data"
    os.chdir("/")
    assert Path(root).is_dir()


def test_the_data_root_comes_from_the_environment_when_no_flag(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("FER_BENCH_DATA", "corpora")
    assert paths.data_root() == str(tmp_path / "corpora")
    monkeypatch.delenv("FER_BENCH_DATA")
    assert paths.data_root() is None
