"""Writes what people read: results/leaderboard.{md,csv,html} with results/plots/*.png, and
results/reports/<run>/report.{md,html}. The content comes from the pure modules (leaderboard,
report, plots); this module finds the inputs on disk and writes the outputs."""
from __future__ import annotations

import re
from pathlib import Path

from bench.errors import UserError
from bench.reports import leaderboard as lb
from bench.reports import plots, sweep_report
from bench.reports.importance import param_importances
from bench.reports.published import PUBLISHED_FILE, load_published
from bench.results.record import Record
from bench.results.store import current_records, load_records
from bench.sweep.spaces import load_space
from bench.sweep.trials import asha_rungs, read_trials

# (caption, file name, PNG bytes)
Plot = tuple[str, str, bytes]


def _slug(*parts: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", "-".join(p for p in parts if p)).strip("-")


def run_folder(record: Record, results_dir: Path) -> Path:
    """The Ray experiment of a record's sweep: an explicit ``run_path`` when the record has one,
    else the default storage results/runs/<run>."""
    if record.run_path and "://" not in str(record.run_path):
        return Path(record.run_path)
    return Path(results_dir) / "runs" / str(record.run or "")


def _space(record: Record):
    path = record.space_path
    if not path or not Path(path).is_file():
        return None
    try:
        return load_space(path, (record.budget or {}).get("device"))  # the space as resolved for its device
    except UserError:
        return None  # the file changed since the sweep; the report says the space is unreadable


def sweep_plots(record: Record, results_dir: Path, prefix: str) -> list[Plot]:
    """Learning curves and hyperparameter importance of the sweep behind ``record``, when its
    experiment folder is still there (storage may have been elsewhere or cleaned up)."""
    trials = read_trials(run_folder(record, results_dir))
    if not trials:
        return []
    space = _space(record)
    metric = record.objective
    max_epochs = int(record.budget.get("max_epochs") or max(t.epochs for t in trials) or 1)
    rungs = asha_rungs(space.scheduler, max_epochs) if space else []
    out = [(f"learning curves of sweep {record.run} ({metric})", f"{prefix}-curves.png",
            plots.learning_curves_png(trials, metric, f"{record.run}: {len(trials)} trials",
                                      rungs=rungs, max_epochs=max_epochs))]
    importances = param_importances(space, trials) if space else {}
    if importances:
        out.append((f"hyperparameter importance of sweep {record.run}", f"{prefix}-importance.png",
                    plots.importance_png(importances, f"{record.run}: importance for {metric}")))
    return out


def leaderboard_plots(board: lb.Leaderboard, records: list[Record], results_dir: Path) -> dict[tuple, list[Plot]]:
    """Per table: each protocol leader's confusion matrix (summed over its test runs), accuracy vs
    latency with the Pareto front, and the leader's sweep curves and importance."""
    by_run = {r.run: r for r in records if r.kind == "search"}
    out: dict[tuple, list[Plot]] = {}
    for key, rows in board.tables.items():
        dataset, modality = key
        figures: list[Plot] = []
        labels = lb.protocol_labels(rows)  # letters as in the table, when it holds several protocols
        for leader in (r for r in rows if r["rank"] == 1):
            letter = labels.get(leader["protocol"], "")
            prefix = _slug(dataset, modality, letter)
            under = f" under protocol [{letter}]" if letter else ""
            if leader.get("confusion"):
                figures.append((f"confusion matrix of the leader{under} ({leader['model']})", f"{prefix}-confusion.png",
                                plots.confusion_png(leader["confusion"], leader.get("class_names"),
                                                    f"{dataset} — {leader['model']} (n={leader['n']})")))
            if leader.get("run") in by_run:
                figures += sweep_plots(by_run[leader["run"]], results_dir, f"{prefix}-leader")
        # one trade-off per protocol (test scores under different protocols do not compare), drawn
        # when two configurations differ in latency as the table prints it
        for protocol in sorted({r["protocol"] for r in rows}):
            timed = [r for r in rows if r["protocol"] == protocol and r.get("inference_ms") is not None]
            if len({lb.format_ms(r["inference_ms"]) for r in timed}) < 2:
                continue
            letter = labels.get(protocol, "")
            under = f" under protocol [{letter}]" if letter else ""
            figures.append((f"test UAR vs inference latency, Pareto front{under}",
                            f"{_slug(dataset, modality, letter)}-pareto.png",
                            plots.pareto_png([f"{r['model']} #{r['rank']}" for r in timed],
                                             [float(r["inference_ms"]) for r in timed],
                                             [100 * r["uar"] for r in timed],
                                             f"{dataset} — {modality}{under}")))
        if figures:
            out[key] = figures
    return out


def _only_dataset(records: list[Record], published: list[dict], dataset: str, results_dir: Path):
    """The records and published rows of one dataset (cross-corpus ones trained or tested on it)."""
    mine = [r for r in records if dataset in (r.dataset, r.eval_dataset)]
    if not mine:
        known = sorted({str(r.dataset) for r in records if r.dataset})
        raise UserError(f"no records of dataset {dataset!r} in {results_dir / 'records.jsonl'}; "
                        f"recorded datasets: {', '.join(known)}")
    return mine, [p for p in published if p["dataset"] == dataset]


def write_leaderboard(results_dir: Path, published_path: Path | None = None,
                      dataset: str | None = None) -> tuple[str, list[Path]]:
    """leaderboard.md (plots linked), .csv and a self-contained .html (plots embedded); with
    ``dataset``, leaderboard-<dataset>.* of that dataset's records only."""
    results_dir = Path(results_dir)
    records = current_records(load_records(results_dir))  # a resumed sweep's earlier records are replaced
    published = load_published(published_path or results_dir / PUBLISHED_FILE)
    if dataset:
        records, published = _only_dataset(records, published, dataset, results_dir)
    board = lb.build_leaderboard(records, published)
    figures = leaderboard_plots(board, records, results_dir)
    results_dir.mkdir(parents=True, exist_ok=True)
    written = []
    plot_dir = results_dir / "plots"
    for plot_list in figures.values():
        for _, name, png in plot_list:
            plot_dir.mkdir(exist_ok=True)
            (plot_dir / name).write_bytes(png)
            written.append(plot_dir / name)
    links = {key: [(caption, f"plots/{name}") for caption, name, _ in fs] for key, fs in figures.items()}
    images = {key: [(caption, png) for caption, _, png in fs] for key, fs in figures.items()}
    markdown = lb.to_markdown(board, links)
    stem = f"leaderboard-{_slug(dataset)}" if dataset else "leaderboard"
    files = {f"{stem}.md": markdown, f"{stem}.csv": lb.to_csv(board),
             f"{stem}.html": lb.to_html(board, images, title=f"fer-bench leaderboard: {dataset}" if dataset
                                        else "fer-bench leaderboard")}
    for name, text in files.items():
        (results_dir / name).write_text(text)
    return markdown, [results_dir / name for name in files] + written


def write_report(run: str, results_dir: Path) -> list[Path]:
    """results/reports/<run>/report.{md,html} and its PNGs, from the run's latest search record."""
    results_dir = Path(results_dir)
    records = [r for r in load_records(results_dir) if r.run == run and r.kind == "search"]
    if not records:
        known = sorted({str(r.run) for r in load_records(results_dir) if r.run})
        hint = f"; recorded sweeps: {', '.join(known)}" if known else "; no sweep is recorded there yet"
        raise UserError(f"no sweep named {run!r} in {results_dir / 'records.jsonl'}{hint}")
    record = records[-1]
    space = _space(record)
    trials = read_trials(run_folder(record, results_dir))
    rep = sweep_report.SweepReport(record, trials, space, Path(record.space_path).read_text() if space else "",
                                   param_importances(space, trials) if space and trials else {})
    figures = sweep_plots(record, results_dir, "sweep")
    if record.test.get("confusion"):
        figures.append(("confusion matrix of the best configuration on test", "confusion.png",
                        plots.confusion_png(record.test["confusion"], record.class_names,
                                            f"{run}: {record.model} on test")))
    out_dir = results_dir / "reports" / _slug(run)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for _, name, png in figures:
        (out_dir / name).write_bytes(png)
        written.append(out_dir / name)
    (out_dir / "report.md").write_text(sweep_report.to_markdown(rep, [(c, n) for c, n, _ in figures]))
    (out_dir / "report.html").write_text(sweep_report.to_html(rep, [(c, png) for c, _, png in figures]))
    return [out_dir / "report.md", out_dir / "report.html"] + written
