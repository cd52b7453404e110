"""`fer-bench data prepare` over Ray: shards of samples prepared as Ray tasks on every local core
or a two-node cluster; a second run does no work, an interrupted one continues, unreadable files
are skipped and named, and the report says how many samples each node prepared."""
import subprocess
import sys

import pytest
from test_cluster import two_node_cluster  # noqa: F401  (the fixture: a two-node Ray cluster on localhost)

from bench.cli import main
from bench.data.affectnet import AffectNet
from bench.data.prepare import merge_reports
from bench.sweep.prepare_ray import shard


def test_shards_cover_every_sample_once_about_four_per_worker():
    parts = shard(list(range(1000)), workers=2)
    assert [x for p in parts for x in p] == list(range(1000)) and len(parts) == 8
    assert max(len(p) for p in shard(list(range(10_000)), workers=2)) == 256  # capped
    assert shard([], workers=4) == []


def test_merged_shard_reports_read_like_one_pass():
    from bench.data import get_adapter
    from bench.data.base import PrepareReport, Skipped

    jaffe = get_adapter("jaffe")
    shards = [PrepareReport(total=3, computed=2, cached=1, skipped=[Skipped("a", "broken")],
                            stats={"detected": 1, "no_face": 1, "no_face_files": ["x"], "crop_size": 112,
                                   "no_face_option": "centre", "fallback": "a centre crop"}),
              PrepareReport(total=2, computed=2, stats={"detected": 1, "no_face": 1, "no_face_files": ["y"],
                                                        "crop_size": 112, "no_face_option": "centre",
                                                        "fallback": "a centre crop"})]
    for r in shards:
        r.notes = jaffe.prepare_notes(r.stats)
    merged = merge_reports(jaffe, shards)
    assert (merged.total, merged.computed, merged.cached, len(merged.skipped)) == (5, 4, 1, 1)
    assert merged.stats["crop_size"] == 112 and merged.stats["no_face_files"] == ["x", "y"]
    assert merged.notes == jaffe.prepare_notes(merged.stats)
    assert merged.notes[0].startswith("MTCNN found no face in 2 of 4 images (50.0%)")


@pytest.mark.slow
@pytest.mark.ray
def test_prepare_on_two_local_workers_is_resumable_and_names_bad_files(tmp_path, capsys):
    root = AffectNet.make_fake(tmp_path / "data")
    broken = next((root / "AffectNet" / "Manually_Annotated_Images" / "3").glob("*.jpg"))
    broken.write_bytes(b"not a jpeg")
    cache = tmp_path / "cache"
    args = ["data", "prepare", "--dataset", "affectnet", "--data-root", str(root), "--cache-dir", str(cache),
            "--workers", "2", "--quiet"]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "affectnet: 39 samples; 39 prepared now, 0 already cached" in out
    line = next(x for x in out.splitlines() if "prepared per node:" in x)
    assert line.endswith(" 39") and line.count(",") == 0  # one node here, all 39 prepared on it
    assert f"{broken.relative_to(root / 'AffectNet').as_posix()}:" in out  # skipped and named
    entries = sorted((cache / "faces").rglob("*.npz"))
    assert len(entries) == 39
    for entry in entries[:5]:  # an interrupted run: these were never written
        entry.unlink()
    assert main(args) == 0
    assert "39 samples; 5 prepared now, 34 already cached" in capsys.readouterr().out
    assert main(args) == 0
    assert "39 samples; 0 prepared now, 39 already cached" in capsys.readouterr().out


@pytest.mark.slow
@pytest.mark.ray
def test_prepare_on_a_two_node_cluster_uses_both_nodes(tmp_path, two_node_cluster):  # noqa: F811
    root = AffectNet.make_fake(tmp_path / "data")
    done = subprocess.run([sys.executable, "-m", "bench.cli", "data", "prepare", "--dataset", "affectnet",
                           "--data-root", str(root), "--cache-dir", str(tmp_path / "cache"),
                           "--address", two_node_cluster["address"], "--quiet"],
                          env=two_node_cluster["env"], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    line = next(x for x in done.stdout.splitlines() if "prepared per node:" in x)
    counts = [int(part.rsplit(" ", 1)[1]) for part in line.split(":", 1)[1].split(",")]
    assert len(counts) == 2 and sum(counts) == 40 and min(counts) > 0, line


def test_an_address_nobody_answers_is_one_sentence(tmp_path, capsys):
    root = AffectNet.make_fake(tmp_path / "data")
    assert main(["data", "prepare", "--dataset", "affectnet", "--data-root", str(root), "--cache-dir",
                 str(tmp_path / "c"), "--address", "127.0.0.1:9", "--quiet"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("fer-bench: error: no Ray cluster answers at '127.0.0.1:9'")



