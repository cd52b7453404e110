"""The written leaderboard: golden Markdown/CSV, published rows, cross-corpus table, plots, HTML.

Golden files: tests/golden/records.jsonl + tests/golden/published.yaml -> tests/golden/leaderboard.{md,csv}.
After an intended change of the output, regenerate them and review the diff:

    FER_BENCH_UPDATE_GOLDEN=1 .venv/bin/python -m pytest tests/test_leaderboard_outputs.py
"""
from __future__ import annotations

import csv
import io
import json
import os
import shutil
import struct
from pathlib import Path

import pytest

from bench.errors import UserError
from bench.reports import leaderboard as lb
from bench.reports.outputs import write_leaderboard
from bench.reports.plots import pareto_front
from bench.reports.published import load_published
from bench.results.store import load_records

GOLDEN = Path(__file__).parent / "golden"
REPO = Path(__file__).resolve().parents[1]
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == PNG_SIGNATURE, "not a PNG"
    assert data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


@pytest.fixture
def written(tmp_path):
    results = tmp_path / "results"
    results.mkdir()
    shutil.copy(GOLDEN / "records.jsonl", results / "records.jsonl")
    markdown, files = write_leaderboard(results, published_path=GOLDEN / "published.yaml")
    return results, markdown, files


def test_markdown_and_csv_match_the_golden_files(written):
    results, _, _ = written
    for name in ("leaderboard.md", "leaderboard.csv"):
        produced = (results / name).read_text()
        if os.environ.get("FER_BENCH_UPDATE_GOLDEN") == "1":
            (GOLDEN / name).write_text(produced)
        assert produced == (GOLDEN / name).read_text(), f"{name} differs from tests/golden/{name}"
    assert str(results) not in (results / "leaderboard.md").read_text()  # no machine paths


def test_benchmark_repeats_aggregate_and_protocols_rank_separately():
    board = lb.build_leaderboard(load_records(GOLDEN), load_published(GOLDEN / "published.yaml"))
    rows = board.tables[("toyfaces", "face")]
    assert "cheater_net" not in {r["model"] for r in rows}  # selected on test: never ranked
    winner = next(r for r in rows if r["model"] == "fer_cnn" and r["protocol"].startswith("3-fold"))
    # the 6 benchmark runs (3 folds x 2 seeds) replace the sweep's own single test run
    assert (winner["n"], winner["folds"], winner["seeds"]) == (6, 3, 2)
    assert winner["uar"] == pytest.approx(0.6067, abs=1e-3) and winner["kinds"] == "benchmark"
    assert winner["trials"] == 10 and winner["errored"] == 1  # the budget of the sweep that found it
    ranks = {(r["protocol"], r["model"]): r["rank"] for r in rows}
    assert ranks[("leave-one-subject-out", "fer_cnn")] == 1  # 0.70, but alone under its protocol
    assert ranks[("3-fold subject-independent", "fer_cnn")] == 1
    assert ranks[("3-fold subject-independent", "timm/resnet18")] == 2
    # cross-corpus rows stay out of the main table
    assert [(r["dataset"], r["eval_dataset"], r["shared_classes"]) for r in board.cross_corpus] == [
        ("toyfaces", "otherfaces", ["angry", "happy"])]


def test_published_rows_show_their_protocol_and_are_never_ranked(written):
    results, markdown, _ = written
    section = markdown.split("## toyfaces — face")[1].split("\n## ")[0]
    published_line = next(line for line in section.splitlines() if "*published*" in line)
    assert published_line.startswith("| — |") and "91.25 ⚠" in published_line
    assert "random 80/20 image split (subjects shared)" in section and "differs from ours" in section
    our_ranks = [line.split("|")[1].strip() for line in section.splitlines()
                 if line.startswith("| ") and "*published*" not in line and not line.startswith("| rank")]
    assert all(rank[0].isdigit() for rank in our_ranks)
    assert "## Published results on datasets without fer-bench runs yet" in markdown and "SoundNet" in markdown
    rows = list(csv.DictReader(io.StringIO((results / "leaderboard.csv").read_text())))
    published = [r for r in rows if r["table"] == "published"]
    assert {r["model"] for r in published} == {"ToyNet (big)", "SoundNet"}
    assert all(r["rank"] == "" for r in published)
    assert next(r for r in published if r["model"] == "ToyNet (big)")["accuracy"] == "0.9125"
    assert [r["eval_dataset"] for r in rows if r["table"] == "cross_corpus"] == ["otherfaces"]
    # a number nobody read in the paper keeps its caveats in every output
    elsewhere = markdown.split("## Published results on datasets without fer-bench runs yet")[1]
    sound = next(line for line in elsewhere.splitlines() if "SoundNet" in line)
    assert "70 ? (unverified)" in sound and "memory (unverified)" in sound and "recalled, not read" in sound
    assert {(r["model"], r["verified"], r["source"]) for r in published} == {
        ("ToyNet (big)", "yes", "table"), ("SoundNet", "no", "memory")}
    assert next(r for r in published if r["model"] == "SoundNet")["note"] == "recalled, not read in the paper"
    assert "memory (unverified)" in (results / "leaderboard.html").read_text()


def test_plots_are_valid_pngs_linked_from_markdown_and_embedded_in_html(written):
    results, markdown, files = written
    pngs = [f for f in files if f.suffix == ".png"]
    assert {p.name for p in pngs} == {"toyfaces-face-A-confusion.png", "toyfaces-face-B-confusion.png",
                                      "toyfaces-face-A-pareto.png"}  # protocol B has one configuration
    for path in pngs:
        data = path.read_bytes()
        width, height = png_size(data)
        assert width > 200 and height > 200 and len(data) > 5000, path.name
        assert f"(plots/{path.name})" in markdown
    page = (results / "leaderboard.html").read_text()
    assert page.count("<img src='data:image/png;base64,") == len(pngs)
    # self-contained: nothing to fetch
    assert "<script src" not in page and "<link" not in page and "src='http" not in page
    assert "class='sortable'" in page and "<tr class='published'>" in page


def test_empty_store_without_published_rows_says_how_to_start(tmp_path):
    markdown, _ = write_leaderboard(tmp_path, published_path=tmp_path / "none.yaml")
    assert "fer-bench search face --dataset synthetic" in markdown
    assert "fer-bench search face" in (tmp_path / "leaderboard.html").read_text()


def test_shipped_published_results_cover_the_datasets_and_the_mic_numbers():
    rows = load_published(REPO / "results" / "published.yaml")
    assert {"raf", "fer2013", "ckplus", "mmi", "afew", "jaffe", "ravdess", "cremad"} <= {r["dataset"] for r in rows}
    assert {"tess", "emodb"} & {r["dataset"] for r in rows}
    mic = {(r["dataset"], r["value"]) for r in rows if r["method"].startswith("MIC")}
    assert mic == {("ckplus", 98.95), ("ckplus", 99.71), ("mmi", 81.29), ("afew", 53.18), ("afew", 53.72)}
    # read in the paper's own tables (issue 21): verified, and the variant is named
    variants = {(r["dataset"], r["value"]): r["method"].split()[0] for r in rows if r["method"].startswith("MIC")}
    assert variants[("ckplus", 99.71)] == variants[("afew", 53.72)] == "MIC+ResNet6"
    assert variants[("ckplus", 98.95)] == variants[("afew", 53.18)] == variants[("mmi", 81.29)] == "MIC"
    assert all(r["verified"] for r in rows if r["method"].startswith("MIC"))
    assert all(r["selected_on_test"] in {"yes", "no", "not stated"} for r in rows)


def test_malformed_published_row_names_the_row_and_field(tmp_path):
    path = tmp_path / "published.yaml"
    path.write_text("results:\n  - {paper: P, year: 2020, dataset: raf, modality: face, method: M,\n"
                    "     protocol: x, metric: top5, value: 50, selected_on_test: no, source: table}\n")
    with pytest.raises(UserError, match="result 1: metric 'top5'"):
        load_published(path)


def test_pareto_front_keeps_points_nothing_beats_on_both_latency_and_score():
    points = [(1.0, 50.0), (2.0, 60.0), (3.0, 55.0), (0.5, 40.0), (4.0, 70.0)]
    assert pareto_front(points) == [3, 0, 1, 4]


def test_leaderboard_of_an_empty_folder_or_an_unrecorded_dataset_is_one_sentence_and_exit_2(tmp_path, capsys):
    from bench.cli import main

    assert main(["leaderboard", "--results-dir", str(tmp_path / "none")]) == 2
    err = capsys.readouterr().err
    assert "no records in" in err and err.strip().count("\n") == 0 and "Traceback" not in err
    assert not (tmp_path / "none" / "leaderboard.md").exists()
    results = tmp_path / "results"
    results.mkdir()
    shutil.copy(GOLDEN / "records.jsonl", results / "records.jsonl")
    assert main(["leaderboard", "--results-dir", str(results), "--dataset", "raf"]) == 2
    err = capsys.readouterr().err
    assert "no records of dataset 'raf'" in err and "toyfaces" in err and err.strip().count("\n") == 0
    assert main(["leaderboard", "--results-dir", str(results), "--dataset", "toyfaces"]) == 0
    assert (results / "leaderboard-toyfaces.md").is_file() and not (results / "leaderboard.md").exists()


def test_pareto_plot_only_when_two_configurations_differ_in_latency(tmp_path):
    results = tmp_path / "results"
    results.mkdir()
    lines = [json.loads(line) for line in (GOLDEN / "records.jsonl").read_text().splitlines() if line.strip()]
    for r in lines:  # the same latency as the table prints it (2.50): nothing to trade off
        r["inference_ms_per_sample"] = 2.4982 if r["model"] == "fer_cnn" else 2.5002
    (results / "records.jsonl").write_text("".join(json.dumps(r) + "\n" for r in lines))
    _, files = write_leaderboard(results, published_path=GOLDEN / "published.yaml")
    assert not any("pareto" in f.name for f in files)
    for r in lines:
        r["inference_ms_per_sample"] = 1.0 if r["model"] == "fer_cnn" else 2.5
    (results / "records.jsonl").write_text("".join(json.dumps(r) + "\n" for r in lines))
    _, files = write_leaderboard(results, published_path=GOLDEN / "published.yaml")
    assert [f.name for f in files if "pareto" in f.name] == ["toyfaces-face-A-pareto.png"]
