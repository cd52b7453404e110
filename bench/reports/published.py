"""Published results (``results/published.yaml``): loaded and validated, never ranked against ours."""
from __future__ import annotations

from pathlib import Path

import yaml

from bench.errors import UserError

PUBLISHED_FILE = "published.yaml"
REQUIRED = ("paper", "year", "dataset", "modality", "method", "protocol", "metric", "value",
            "selected_on_test", "source")
OPTIONAL = ("note", "url")
METRICS = {"accuracy", "uar", "macro_f1"}
SELECTION_FLAGS = {"yes", "no", "not stated"}
# Sources read in the paper's own text; "issue" (copied from a tracker) and "memory" were not, so
# their rows carry an "unverified" mark wherever they are shown.
VERIFIED_SOURCES = {"abstract", "table", "text"}


def load_published(path: Path) -> list[dict]:
    """The rows of a published-results file; no file means no rows. A malformed row is an error
    naming the row and field: a silently dropped citation would misrepresent the literature."""
    path = Path(path)
    if not path.is_file():
        return []
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise UserError(f"{path} is not valid YAML: {exc}") from None
    rows = data.get("results") if isinstance(data, dict) else None
    if not isinstance(rows, list):
        raise UserError(f"{path} must hold a top-level `results:` list")
    return [_check_row(row, number, path) for number, row in enumerate(rows, 1)]


def _check_row(row, number: int, path: Path) -> dict:
    where = f"{path}, result {number}"
    if not isinstance(row, dict):
        raise UserError(f"{where}: expected a mapping of fields")
    unknown = set(row) - set(REQUIRED) - set(OPTIONAL)
    if unknown:
        raise UserError(f"{where}: unknown field(s) {sorted(unknown)}; allowed: {list(REQUIRED + OPTIONAL)}")
    missing = [k for k in REQUIRED if row.get(k) in (None, "")]
    if missing:
        raise UserError(f"{where}: missing field(s) {missing}")
    if row["metric"] not in METRICS:
        raise UserError(f"{where}: metric {row['metric']!r} is not one of {sorted(METRICS)}")
    # YAML reads a bare yes/no as a boolean; accept it rather than make every author quote it
    flag = {True: "yes", False: "no"}.get(row["selected_on_test"], row["selected_on_test"])
    if flag not in SELECTION_FLAGS:
        raise UserError(f"{where}: selected_on_test must be one of {sorted(SELECTION_FLAGS)}, got {flag!r}")
    try:
        value = float(row["value"])
    except (TypeError, ValueError):
        raise UserError(f"{where}: value must be a number (percent), got {row['value']!r}") from None
    if not 0 <= value <= 100:
        raise UserError(f"{where}: value is a percentage, got {value}")
    return {**{k: row.get(k) for k in REQUIRED + OPTIONAL}, "value": value, "selected_on_test": flag,
            "year": int(row["year"]), "verified": str(row["source"]).strip().lower() in VERIFIED_SOURCES}
