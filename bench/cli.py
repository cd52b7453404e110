"""``fer-bench`` command line: argument parsing and friendly errors only; the work is in ``api``."""
from __future__ import annotations

import argparse
import json
import os
import sys

from bench.families import DEFAULT_FAMILY, family_names


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {value}")
    return value


def _non_negative_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {value}")
    return value


class _Deprecated(argparse.Action):
    """An old spelling of a flag: it still works, with a note naming the new one."""

    def __call__(self, parser, namespace, values, option_string=None):
        new = "--" + self.dest.replace("_", "-")
        print(f"fer-bench: note: {option_string} is deprecated; use {new}", file=sys.stderr)
        setattr(namespace, self.dest, values)


def _add_search(sub) -> None:
    p = sub.add_parser("search", help="sweep a model family on a dataset with Ray Tune")
    p.add_argument("family", choices=family_names(), metavar="FAMILY",
                   help=f"the search family: {', '.join(family_names())} (bench.families)")
    p.add_argument("--dataset", required=True, help="dataset name (see `fer-bench data list`)")
    p.add_argument("--data-root", help="dataset folder (else $FER_BENCH_DATA)")
    p.add_argument("--space", help="search-space YAML (default: the family's built-in one for the dataset)")
    p.add_argument("--samples", type=_positive_int, help="number of trials (default: the space's budget)")
    p.add_argument("--max-epochs", type=_positive_int, help="epochs per trial at most")
    p.add_argument("--cpus-per-trial", type=_non_negative_float, default=1.0)
    p.add_argument("--gpus-per-trial", type=_non_negative_float, default=0.0)
    p.add_argument("--storage", help="experiment storage: folder or URI (default results/runs)")
    p.add_argument("--name", help="experiment name (default <dataset>-<family>-<time>)")
    p.add_argument("--address", help="join a running Ray cluster at HOST:PORT")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--cache-dir", help="preprocessing cache (else $FER_BENCH_CACHE or ~/.cache/fer-bench)")
    p.add_argument("--results-dir", help="results store (else $FER_BENCH_RESULTS or ./results)")
    p.add_argument("--quiet", action="store_true", help="no per-trial progress table")
    p.add_argument("--workers-per-trial", type=_positive_int, default=1,
                   help="run each trial as DistributedDataParallel over N Ray Train workers")
    p.add_argument("--objective", help="several objectives, e.g. val/uar,latency_ms (records the Pareto front)")
    p.add_argument("--init", action="append", metavar="REF",
                   help="also try starting from REF: best:<dataset>/<family>, a checkpoint folder or a weights "
                        "file (adds it to model.init; repeatable)")
    p.add_argument("--resume", action="store_true",
                   help="continue the sweep --name under --storage after a crash or a lost node")
    p.add_argument("--time-budget", metavar="DURATION",
                   help="stop the sweep cleanly after this long, e.g. 30m, 90s, 2h or seconds "
                        "(default: the space's budget.time_budget)")
    p.add_argument("--mlflow", metavar="URI", help="also log every trial and the record to MLflow: a tracking "
                                                 "URI (sqlite:///runs.db, http://host:5000) or a local path")


def _add_data_summary_and_prepare(dsub) -> None:
    p = dsub.add_parser("summary", help="what a dataset adapter finds under a data root")
    p.add_argument("--dataset", required=True, help="dataset name (see `fer-bench data list`)")
    p.add_argument("--data-root", help="the dataset's folder or the folder containing it (else $FER_BENCH_DATA)")
    p.add_argument("--cache-dir", help="cache (else $FER_BENCH_CACHE or ~/.cache/fer-bench)")
    p.add_argument("--seed", type=int, default=0, help="seed of the folds and validation draw (sweeps use 0)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p = dsub.add_parser("prepare", help="detect/align faces (or decode media) once into the cache")
    p.add_argument("--dataset", required=True, help="dataset name (see `fer-bench data list`)")
    p.add_argument("--data-root", help="the dataset's folder or the folder containing it (else $FER_BENCH_DATA)")
    p.add_argument("--cache-dir", help="cache (else $FER_BENCH_CACHE or ~/.cache/fer-bench)")
    p.add_argument("--crop-size", type=_positive_int, default=112, help="aligned face crop size (face data)")
    p.add_argument("--select", choices=["largest", "confident"], default="largest",
                   help="which face when MTCNN finds several")
    p.add_argument("--no-face", choices=["centre", "drop"], default="centre",
                   help="when MTCNN finds no face: centre-crop the image, or drop it from the dataset")
    p.add_argument("--address", help="spread the work over the Ray cluster at HOST:PORT (--cache-dir must be "
                                     "a folder every node sees)")
    p.add_argument("--workers", type=_positive_int,
                   help="local Ray workers without --address (default: every core; 1: in this process, no Ray)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def _add_predict_and_export(sub) -> None:
    p = sub.add_parser("predict", help="run a trained model on photos, videos or audio (MTCNN faces)")
    p.add_argument("model_ref", metavar="MODEL_REF", help="checkpoint or ensemble folder, or best:<dataset>/<family>")
    p.add_argument("inputs", nargs="+", metavar="INPUT", help="image, video or audio files, or folders of them")
    fmt = p.add_mutually_exclusive_group()
    fmt.add_argument("--json", action="store_true", help="print one JSON object (layout in the README)")
    fmt.add_argument("--csv", action="store_true", help="print CSV, one row per face or audio window")
    p.add_argument("--annotate", metavar="OUT.mp4", help="write a copy of the video with boxes and labels")
    p.add_argument("--fps", type=_non_negative_float, default=5.0,
                   help="video frames analysed per second (0 = every frame; default 5)")
    p.add_argument("--threshold", type=_non_negative_float,
                   help="clip label: ignore frames whose top probability is below this (default: the model's, or 0)")
    p.add_argument("--results-dir", help="results store for best:... (else $FER_BENCH_RESULTS or ./results)")
    p.add_argument("--cache-dir", help="cache (else $FER_BENCH_CACHE or ~/.cache/fer-bench)")
    p.add_argument("--data-root", help="the model's training data, for voice normalisation (else the checkpoint's)")
    p = sub.add_parser("export", help="export a trained model to ONNX and check it against PyTorch")
    p.add_argument("model_ref", metavar="MODEL_REF", help="checkpoint or ensemble folder, or best:<dataset>/<family>")
    p.add_argument("--onnx", required=True, metavar="OUT.onnx", help="where to write the ONNX file")
    p.add_argument("--opset", type=_positive_int, default=17)
    p.add_argument("--results-dir", help="results store for best:... (else $FER_BENCH_RESULTS or ./results)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="fer-bench", description="Find the best emotion-recognition "
                                     "model for a dataset, honestly.")
    sub = parser.add_subparsers(dest="command", required=True)
    _add_search(sub)
    p = sub.add_parser("benchmark", help="retrain a sweep's top-k configs on every fold x seed and test once")
    p.add_argument("--dataset", required=True)
    p.add_argument("--family", default=DEFAULT_FAMILY, choices=family_names(), help="the sweep's search family")
    p.add_argument("--modality", dest="family", choices=family_names(), action=_Deprecated, help=argparse.SUPPRESS)
    p.add_argument("--top-k", type=_positive_int, default=1)
    p.add_argument("--seeds", type=_positive_int, default=1)
    p.add_argument("--ensemble", type=_positive_int, default=0, metavar="K",
                   help="also test an ensemble of up to K of the sweep's best configurations on every fold as "
                        "one row (kind ensemble): members and weights chosen by ensemble selection (Caruana "
                        "et al.) on the sweep's validation probabilities; only the members are retrained")
    p.add_argument("--nested", action="store_true",
                   help="search then refit inside each outer fold, the search seeing only that fold's training "
                        "subjects: an estimate without selection bias (budget per fold: the space's)")
    p.add_argument("--space", help="--nested: the space each fold searches (default: the built-in one)")
    p.add_argument("--eval-dataset", help="cross-corpus: evaluate the leader on this dataset's shared classes")
    p.add_argument("--refit", action=argparse.BooleanOptionalAction, default=True,
                   help="retrain on train + val for the epochs the sweep's validation peaked at and test "
                        "the last epoch (default); --no-refit: train only, test the best epoch on validation")
    p.add_argument("--eval-data-root")
    p.add_argument("--data-root")
    p.add_argument("--cpus-per-trial", type=_non_negative_float, default=1.0)
    p.add_argument("--gpus-per-trial", type=_non_negative_float, default=0.0)
    p.add_argument("--address")
    p.add_argument("--storage")
    p.add_argument("--cache-dir")
    p.add_argument("--results-dir")
    p.add_argument("--name", help="the benchmark's name (default <sweep>-benchmark-<time>)")
    p.add_argument("--mlflow", metavar="URI", help="also log every retrain and record to MLflow (as for search)")
    p.add_argument("--resume", action="store_true",
                   help="continue the benchmark --name (default: this sweep's latest) after a crash: recorded "
                        "folds stay, only the rest run")
    p.add_argument("--quiet", action="store_true")
    p = sub.add_parser("leaderboard", help="write results/leaderboard.{md,csv,html} (+ plots/) and print it")
    p.add_argument("--results-dir")
    p.add_argument("--dataset", help="only this dataset's records: writes leaderboard-<dataset>.{md,csv,html}")
    p = sub.add_parser("reproduce", help="re-run one record's config, fold and seed; print old vs new metrics")
    p.add_argument("record_id", metavar="RECORD_ID",
                   help="a record id (the leaderboard's provenance, or leaderboard.csv's record_ids)")
    p.add_argument("--results-dir")
    p.add_argument("--cache-dir")
    p.add_argument("--data-root", help="where the record's data is now (default: where it was)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p = sub.add_parser("report", help="one sweep on one page: results/reports/RUN/report.{md,html}")
    p.add_argument("run", metavar="RUN_NAME", help="the sweep's --name (see results/records.jsonl)")
    p.add_argument("--results-dir")
    models = sub.add_parser("models", help="the model zoo")
    msub = models.add_subparsers(dest="models_command", required=True)
    ml = msub.add_parser("list", help="list registered models")
    ml.add_argument("pattern", nargs="?", default="*")
    ml.add_argument("--json", action="store_true")
    data = sub.add_parser("data", help="datasets")
    dsub = data.add_subparsers(dest="data_command", required=True)
    dsub.add_parser("list", help="list dataset adapters")
    _add_data_summary_and_prepare(dsub)
    _add_predict_and_export(sub)
    p = sub.add_parser("perf", help="measured speed ratios (trainer, Ray, ASHA, cache, loader, face throughput, "
                                    "video, GPU)")
    p.add_argument("name", choices=["trainer", "ray", "asha", "search", "cache", "loader", "face-throughput",
                                    "video", "gpu", "all"])
    p.add_argument("--size", choices=["tiny", "full"], default="full", help="tiny: seconds, to check it runs")
    p.add_argument("--cache-dir", help="cache (else $FER_BENCH_CACHE or ~/.cache/fer-bench)")
    p.add_argument("--json", action="store_true", help="print one JSON object (the ratios, machine, detail)")
    return parser


def _models_list(args) -> int:
    import fer_models

    rows = []
    for name in fer_models.list_models(args.pattern):
        entry = fer_models.model_entry(name)
        # built with its defaults and 7 classes, so the parameter counts are comparable
        model = fer_models.create_model(name, num_classes=7)
        rows.append({"name": name, "modality": entry.modality, "summary": entry.summary,
                     "params": sum(p.numel() for p in model.parameters()),
                     "trainable_params": sum(p.numel() for p in model.parameters() if p.requires_grad),
                     "input_spec": model.input_spec.to_dict()})
    if args.json:
        print(json.dumps(rows, indent=2, default=list))
    else:
        for r in rows:
            spec = r["input_spec"]
            shape = "x".join(str(d) for d in spec["input_size"]) or "-"
            frames = f" T={spec['frames']}" if spec.get("frames") else ""
            print(f"{r['name']:<12} {r['modality']:<7} {r['params'] / 1e6:>7.2f}M  {shape + frames:<16} {r['summary']}")
    return 0


def _data_list(args) -> int:
    from bench.data import DATASETS

    for name, cls in sorted(DATASETS.items()):
        print(f"{name:<16} {cls.modality:<6} {cls.protocol}")
    return 0


def _data_summary(args) -> int:
    from bench import paths
    from bench.data.summary import format_summary, summarize

    summary = summarize(args.dataset, paths.data_root(args.data_root), paths.cache_dir(args.cache_dir), args.seed)
    print(json.dumps(summary, indent=2) if args.json else format_summary(summary))
    return 0


def _data_prepare(args) -> int:
    from bench import paths
    from bench.data import get_adapter
    from bench.data.face_files import FaceImageAdapter
    from bench.data.prepare import format_report, prepare_dataset

    options = {}
    if isinstance(get_adapter(args.dataset), FaceImageAdapter):  # the adapters that detect and align faces
        from bench.data.prep.faces import FaceAlignSettings

        options["settings"] = FaceAlignSettings(crop_size=args.crop_size, select=args.select, no_face=args.no_face)
    workers = args.workers or os.cpu_count() or 1
    if args.address or workers > 1:  # Ray tasks over shards of the samples, on the cluster or every local core
        from bench.sweep.prepare_ray import prepare_on_ray

        _, report = prepare_on_ray(args.dataset, paths.data_root(args.data_root), paths.cache_dir(args.cache_dir),
                                   address=args.address, workers=None if args.address else workers,
                                   progress=not args.quiet, **options)
    else:
        _, report = prepare_dataset(args.dataset, paths.data_root(args.data_root),
                                    paths.cache_dir(args.cache_dir), progress=not args.quiet, **options)
    print(format_report(args.dataset, report))
    return 0


def _search(args) -> int:
    from bench import api

    result = api.search(
        args.family, args.dataset, space_path=args.space, samples=args.samples,
        max_epochs=args.max_epochs, cpus_per_trial=args.cpus_per_trial, gpus_per_trial=args.gpus_per_trial,
        storage=args.storage, name=args.name, address=args.address, seed=args.seed,
        data_root=args.data_root, cache_dir=args.cache_dir, results_dir=args.results_dir,
        verbose=0 if args.quiet else 1, resume=args.resume, objective=args.objective,
        workers_per_trial=args.workers_per_trial, time_budget=args.time_budget, init=args.init,
        mlflow=args.mlflow,
    )
    r = result.record
    budget = r.budget
    ended = (f", stopped by its {budget['time_budget_s']:.0f} s time budget"
             if budget.get("ended_by_time_budget") else "")
    print(f"\nSweep {r.run}: {budget['trials']} trials ({budget['errored']} errored), "
          f"{budget['epochs']} epochs, {budget['wall_seconds']:.0f} s{ended}.")
    for err in result.errors:
        print(f"  errored trial: {err}")
    so_far = " so far" if r.interrupted else ""
    print(f"Best on validation{so_far}: {r.model} (val UAR {100 * r.val['uar']:.1f}%).")
    print(f"Test, evaluated once: accuracy {100 * r.test['accuracy']:.1f}%, "
          f"UAR {100 * r.test['uar']:.1f}%, macro-F1 {100 * r.test['macro_f1']:.1f}%.")
    for point in r.pareto:
        print("  Pareto front: " + ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                                             for k, v in point.items()))
    print(f"Checkpoint: {r.checkpoint}   Experiment: {result.run_path}")
    if r.supersedes:
        print(f"This record ({r.id}) replaces {', '.join(r.supersedes)}, recorded by earlier runs of this sweep.")
    if budget.get("ended_by_time_budget") and not r.interrupted:
        print(f"Sweep {r.run}: its time budget ended it after {result.finished} of {budget['samples_requested']} "
              f"trials; the unfinished ones kept their last checkpoint: `{result.resume_command}` continues them "
              f"(with its own --time-budget, or the space's).")
    if r.interrupted:
        print(f"Sweep {r.run}: interrupted after {result.finished} of {budget['samples_requested']} trials "
              f"({r.interrupted}; recorded as interrupted); continue with `{result.resume_command}`", flush=True)
        return 128 + result.signum if result.signum else 1
    return 0


def _benchmark(args) -> int:
    from bench import api

    records = api.benchmark(
        args.dataset, args.family, top_k=args.top_k, seeds=args.seeds, eval_dataset=args.eval_dataset,
        cpus_per_trial=args.cpus_per_trial, gpus_per_trial=args.gpus_per_trial, address=args.address,
        storage=args.storage, data_root=args.data_root, eval_data_root=args.eval_data_root,
        cache_dir=args.cache_dir, results_dir=args.results_dir, verbose=0 if args.quiet else 1,
        refit=args.refit, resume=args.resume, name=args.name, mlflow=args.mlflow, ensemble=args.ensemble,
        nested=args.nested, space_path=args.space,
    )
    for r in records:
        where = (f"on {r.eval_dataset} ({len(r.shared_classes)} shared classes)" if r.kind == "cross_corpus"
                 else f"fold {r.fold} seed {r.seed}")
        print(f"{r.model} {where}: test accuracy {100 * r.test['accuracy']:.1f}%, "
              f"UAR {100 * r.test['uar']:.1f}%, macro-F1 {100 * r.test['macro_f1']:.1f}%")
    run = next((r.benchmark_run for r in records if r.benchmark_run), None)
    print(f"{len(records)} record(s) in the store" + (f" for benchmark {run}" if run else "")
          + "; `fer-bench leaderboard` shows mean ± std.")
    return 0


def _leaderboard(args) -> int:
    from bench import api

    markdown, written = api.leaderboard(args.results_dir, dataset=args.dataset)
    print(markdown)
    pages, pngs = written[:3], written[3:]
    print("Wrote " + ", ".join(str(p) for p in pages) + (f" and {len(pngs)} plots in {pngs[0].parent}" if pngs else ""))
    return 0


def _reproduce(args) -> int:
    from bench import api
    from bench.sweep.reproduce import format_text

    rep = api.reproduce(args.record_id, results_dir=args.results_dir, cache_dir=args.cache_dir,
                        data_root=args.data_root)
    print(json.dumps(rep.as_dict(), indent=2, default=str) if args.json else format_text(rep))
    return 0 if rep.exact else 1


def _report(args) -> int:
    from bench import api

    written = api.report(args.run, args.results_dir)
    print(f"Wrote {written[0]} and {written[1]} ({len(written) - 2} plots beside them)")
    return 0


def _predict(args) -> int:
    from bench import paths
    from bench.inference.model_ref import resolve_model_ref
    from bench.inference.predict import Predictor, expand_inputs, media_type, predict
    from bench.inference.predict_output import format_csv, format_text

    checkpoint = resolve_model_ref(args.model_ref, paths.results_dir(args.results_dir))
    files = expand_inputs(args.inputs)
    predictor = Predictor(checkpoint, cache_dir=paths.cache_dir(args.cache_dir),
                          data_root=paths.data_root(args.data_root), fps=args.fps, threshold=args.threshold)
    sink_for = None
    if args.annotate:
        from bench.inference.annotate import AnnotatedVideo, annotated_path

        several = sum(1 for f in files if media_type(f) == "video") > 1
        sink_for = lambda path, video: AnnotatedVideo(annotated_path(args.annotate, path, several),  # noqa: E731
                                                      video.rate, predictor.class_names)
    result = predict(predictor, files, sink_for)
    print(json.dumps(result, indent=2) if args.json else format_csv(result) if args.csv else format_text(result))
    failed = [i for i in result["inputs"] if i.get("error")]
    for item in failed if args.json or args.csv else []:  # the text output already says so
        print(f"fer-bench: skipped {item['path']}: {item['error']}", file=sys.stderr)
    return 1 if failed else 0


def _export(args) -> int:
    from bench import paths
    from bench.inference.export import PARITY_TOLERANCE, export_onnx
    from bench.inference.model_ref import resolve_model_ref

    checkpoint = resolve_model_ref(args.model_ref, paths.results_dir(args.results_dir))
    report = export_onnx(checkpoint, args.onnx, opset=args.opset)
    print(f"Wrote {report.path} ({report.model}; inputs {', '.join(report.input_names)}, dynamic batch) "
          f"in {report.seconds:.1f} s.")
    print(f"onnxruntime vs PyTorch on example inputs (batch {', '.join(map(str, report.batch_sizes))}): max abs "
          f"difference {report.max_abs_diff:.2e} (logits), {report.features_max_abs_diff:.2e} (features).")
    if not report.ok:
        worst = max(report.max_abs_diff, report.features_max_abs_diff)
        print(f"fer-bench: error: the ONNX file differs from PyTorch by {worst:.2e}, over the "
              f"{PARITY_TOLERANCE:.0e} tolerance", file=sys.stderr)
        return 1
    return 0


def _perf(args) -> int:
    from bench.perf.runner import format_text, run

    result = run(args.name, args.size, args.cache_dir, progress=True)
    print(json.dumps(result, indent=2, default=str) if args.json else format_text(result))
    return 130 if result.get("interrupted") else 0


def _stop_on_signal(signum, frame) -> None:
    """SIGTERM (a scheduler, `timeout`, `kill`) ends the command as Ctrl-C does: one line, no
    traceback, exit 128 + the signal's number. During a sweep's fit the sweep installs its own
    graceful stop (bench.sweep.endings) and puts this one back afterwards."""
    from bench.errors import SignalInterrupt

    raise SignalInterrupt(signum)


def main(argv: list[str] | None = None) -> int:
    import signal

    from bench.errors import Interrupted, UserError

    try:
        parser = build_parser()  # the family choices import the plugins, which may fail
    except UserError as exc:
        print(f"fer-bench: error: {exc}", file=sys.stderr)
        return 2
    args = parser.parse_args(argv)
    handlers = {"search": _search, "benchmark": _benchmark, "leaderboard": _leaderboard, "report": _report}
    handlers.update(predict=_predict, export=_export)
    handlers["perf"] = _perf
    handlers["reproduce"] = _reproduce
    previous = signal.getsignal(signal.SIGTERM)
    if previous == signal.SIG_DFL:  # not when embedded in a program that set its own
        signal.signal(signal.SIGTERM, _stop_on_signal)
    try:
        if args.command == "models":
            return _models_list(args)
        if args.command == "data":
            return {"summary": _data_summary, "prepare": _data_prepare}.get(args.data_command, _data_list)(args)
        return handlers[args.command](args)
    except UserError as exc:
        print(f"fer-bench: error: {exc}", file=sys.stderr)
        return 2
    except Interrupted as exc:
        print(f"fer-bench: interrupted: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt as exc:
        signum = getattr(exc, "signum", signal.SIGINT)
        print(f"fer-bench: interrupted ({signal.Signals(signum).name})", file=sys.stderr)
        return 128 + int(signum)
    finally:
        if previous == signal.SIG_DFL:
            signal.signal(signal.SIGTERM, signal.SIG_DFL)


if __name__ == "__main__":
    sys.exit(main())
