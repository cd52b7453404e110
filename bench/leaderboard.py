"""Records -> leaderboard tables. Pure functions: records in, text out; the CLI writes files."""
from __future__ import annotations

import csv
import hashlib
import io
import json
import math
from collections import defaultdict

# Config keys that vary between repeats of one configuration, not between configurations.
_REPEAT_KEYS = {"train.seed", "data.fold", "data.data_root", "data.cache_dir", "train.num_workers"}
METRICS = ("accuracy", "uar", "macro_f1")


def config_id(flat: dict) -> str:
    kept = {k: v for k, v in flat.items() if k not in _REPEAT_KEYS}
    return hashlib.sha256(json.dumps(kept, sort_keys=True, default=str).encode()).hexdigest()[:8]


def _mean_std(values: list[float]) -> tuple[float, float]:
    n = len(values)
    mean = sum(values) / n
    std = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1)) if n > 1 else 0.0
    return mean, std


def _short(value) -> str:
    if isinstance(value, float):
        return f"{value:.2g}" if abs(value) < 0.01 or abs(value) >= 1000 else f"{value:.3g}"
    return str(value)


def key_hyperparameters(record: dict) -> str:
    flat = record.get("config", {})
    keys = [k for k in record.get("searched", []) if k != "model.name" and k in flat]
    return ", ".join(f"{k.split('.', 1)[1]}={_short(flat[k])}" for k in keys)


def build_rows(records: list[dict]) -> dict[tuple[str, str], list[dict]]:
    """Group test records by (dataset, modality), aggregate repeats of each config
    (folds x seeds) into mean and std, and rank by mean test UAR."""
    groups: dict[tuple, list[dict]] = defaultdict(list)
    for r in records:
        if r.get("selection") != "val":
            continue  # a number chosen on test data never reaches the leaderboard
        key = (r["dataset"], r["modality"], r.get("protocol", ""), config_id(r.get("config", {})))
        groups[key].append(r)
    tables: dict[tuple[str, str], list[dict]] = defaultdict(list)
    for (dataset, modality, protocol, cid), rs in groups.items():
        latest = rs[-1]
        row = {
            "dataset": dataset, "modality": modality, "protocol": protocol, "config_id": cid,
            "model": latest["model"], "hyperparameters": key_hyperparameters(latest), "n": len(rs),
            "params": latest.get("params"),
            "trials": latest.get("budget", {}).get("trials"),
            "errored": latest.get("budget", {}).get("errored", 0),
            "epochs": latest.get("budget", {}).get("epochs"),
            "device_s": latest.get("budget", {}).get("device_seconds"),
            "wall_s": latest.get("budget", {}).get("wall_seconds"),
            "inference_ms": latest.get("inference_ms_per_sample"),
            "selection": f"best {latest.get('objective', 'val/uar')} on validation",
            "space_hash": latest.get("space_hash"), "commit": latest.get("provenance", {}).get("commit"),
        }
        for m in METRICS:
            row[m], row[m + "_std"] = _mean_std([float(r["test"][m]) for r in rs])
        tables[(dataset, modality)].append(row)
    for rows in tables.values():
        rows.sort(key=lambda r: (-r["uar"], -r["accuracy"]))
        for rank, row in enumerate(rows, 1):
            row["rank"] = rank
    return dict(sorted(tables.items()))


def _pct(row: dict, metric: str) -> str:
    mean, std = 100 * row[metric], 100 * row[metric + "_std"]
    return f"{mean:.1f} ± {std:.1f}" if row["n"] > 1 else f"{mean:.1f}"


def _duration(seconds) -> str:
    if seconds is None:
        return ""
    seconds = float(seconds)
    return f"{seconds / 60:.1f} min" if seconds >= 60 else f"{seconds:.0f} s"


def _params(n) -> str:
    if n is None:
        return ""
    return f"{n / 1e6:.2f}M" if n >= 1e5 else f"{n / 1e3:.0f}k"


MD_COLUMNS = ("rank", "model", "key hyperparameters", "test acc %", "UAR %", "macro-F1 %", "n",
              "params", "trials", "epochs", "wall", "selection")


def to_markdown(tables: dict[tuple[str, str], list[dict]]) -> str:
    if not tables:
        return "# fer-bench leaderboard\n\nNo results yet: run `fer-bench search face --dataset synthetic`.\n"
    out = ["# fer-bench leaderboard", "",
           "Test metrics of configurations selected on validation data only; mean ± std over "
           "folds × seeds where n > 1.", ""]
    for (dataset, modality), rows in tables.items():
        protocols = sorted({r["protocol"] for r in rows})
        out += [f"## {dataset} — {modality}", "", f"Protocol: {'; '.join(protocols)}", ""]
        out.append("| " + " | ".join(MD_COLUMNS) + " |")
        out.append("|" + "|".join("---" for _ in MD_COLUMNS) + "|")
        for r in rows:
            trials = f"{r['trials']}" + (f" ({r['errored']} errored)" if r.get("errored") else "")
            cells = [r["rank"], r["model"], r["hyperparameters"] or "—", _pct(r, "accuracy"), _pct(r, "uar"),
                     _pct(r, "macro_f1"), r["n"], _params(r["params"]), trials, r["epochs"],
                     _duration(r["wall_s"]), r["selection"]]
            out.append("| " + " | ".join(str(c) for c in cells) + " |")
        out.append("")
    return "\n".join(out)


CSV_COLUMNS = ("dataset", "modality", "protocol", "rank", "model", "hyperparameters", "config_id", "n",
               "accuracy", "accuracy_std", "uar", "uar_std", "macro_f1", "macro_f1_std", "params",
               "inference_ms", "trials", "errored", "epochs", "device_s", "wall_s", "selection",
               "space_hash", "commit")


def to_csv(tables: dict[tuple[str, str], list[dict]]) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=CSV_COLUMNS, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for rows in tables.values():
        for r in rows:
            writer.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in r.items()})
    return buf.getvalue()
