"""One sweep on one page: its space, every trial, the best configuration and its plots.
Pure: a ``SweepReport`` in, Markdown or HTML text out; ``bench.reports.outputs`` gathers the inputs."""
from __future__ import annotations

import html
from dataclasses import dataclass, field

from bench.reports.leaderboard import METRICS, key_hyperparameters
from bench.results.record import Record
from bench.sweep.spaces import SearchSpace
from bench.sweep.trials import TrialHistory


@dataclass
class SweepReport:
    record: Record
    trials: list[TrialHistory]
    space: SearchSpace | None
    space_text: str = ""
    importances: dict[str, float] = field(default_factory=dict)

    @property
    def metric(self) -> str:
        return self.record.objective

    @property
    def mode(self) -> str:
        return self.record.objective_mode


def _fmt(value) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return "" if value is None else str(value)


def summary_lines(rep: SweepReport) -> list[str]:
    r = rep.record
    budget = r.budget
    test = r.test
    metrics = ", ".join(f"{m} {100 * test[m]:.1f}%" for m in METRICS if m in test)
    return [
        f"Dataset: {r.dataset} ({r.family}); protocol: {r.protocol or ''}",
        f"Selection: best {rep.metric} on validation; test evaluated once: {metrics}",
        f"Best: {r.model} {key_hyperparameters(r)}".rstrip(),
        f"Budget: {budget.get('trials')} trials ({budget.get('errored', 0)} errored), {budget.get('epochs')} epochs, "
        f"{_fmt(budget.get('device_seconds'))} {budget.get('device', 'cpu')}-seconds, "
        f"{_fmt(budget.get('wall_seconds'))} s wall",
        f"Provenance: commit {r.provenance.get('commit', '')}, space hash {r.space_hash or ''}",
    ]


def space_rows(space: SearchSpace | None) -> tuple[tuple[str, ...], list[list[str]]]:
    columns = ("param", "kind", "values", "log", "when")
    if space is None:
        return columns, []
    rows = []
    for p in space.params:
        values = ", ".join(str(v) for v in p.values) if p.kind == "choice" else f"[{p.values[0]}, {p.values[1]}]"
        when = "; ".join(f"{k} in {list(v)}" for k, v in p.when.items())
        rows.append([p.key, p.kind, values, "yes" if p.log else "", when])
    return columns, rows


def trial_rows(rep: SweepReport) -> tuple[tuple[str, ...], list[list]]:
    searched = [p.key for p in rep.space.params] if rep.space else list(rep.record.searched)
    columns = ("trial", "status", "epochs", f"best {rep.metric}", *searched, "error")
    rows = []
    for t in rep.trials:
        best = t.best(rep.metric, rep.mode)
        rows.append([t.trial_id, t.status, (str(t.epochs), t.epochs), (_fmt(best), best),
                     *[_fmt(t.config.get(k, "")) for k in searched], t.error])
    # best first, the way a reader scans a sweep
    sign = -1 if rep.mode == "max" else 1
    rows.sort(key=lambda row: (row[3][1] is None, sign * (row[3][1] or 0)))
    return columns, rows


def best_config_rows(rep: SweepReport) -> list[list[str]]:
    return [[k, _fmt(v)] for k, v in sorted(rep.record.config.items())]


def _text(cell) -> str:
    return str(cell[0] if isinstance(cell, tuple) else cell).replace("|", "\\|")


def _md_table(columns, rows) -> list[str]:
    text = _text
    return (["| " + " | ".join(columns) + " |", "|" + "|".join("---" for _ in columns) + "|"]
            + ["| " + " | ".join(text(c) for c in row) + " |" for row in rows] + [""])


def to_markdown(rep: SweepReport, plots: list[tuple[str, str]] | None = None) -> str:
    run = rep.record.run or ""
    out = [f"# Sweep {run}", ""] + [f"- {line}" for line in summary_lines(rep)] + [""]
    out += ["## Search space", ""]
    columns, rows = space_rows(rep.space)
    out += _md_table(columns, rows) if rows else ["(space file not readable)", ""]
    if rep.space_text:
        out += ["```yaml", rep.space_text.rstrip(), "```", ""]
    out += ["## Trials", ""]
    out += _md_table(*trial_rows(rep)) if rep.trials else ["(no trial folders found)", ""]
    out += ["## Best configuration", ""] + _md_table(("key", "value"), best_config_rows(rep))
    if rep.importances:
        out += ["## Hyperparameter importance", ""]
        out += _md_table(("param", "importance"), [[k, f"{v:.2f}"] for k, v in rep.importances.items()])
    if plots:
        out += ["## Plots", ""] + [f"![{caption}]({path})" for caption, path in plots] + [""]
    return "\n".join(out)


def to_html(rep: SweepReport, images: list[tuple[str, bytes]] | None = None) -> str:
    from bench.reports.html_page import figure, page, table

    run = rep.record.run or ""
    parts = [f"<h1>Sweep {html.escape(str(run))}</h1>", "<ul>"]
    parts += [f"<li>{html.escape(line)}</li>" for line in summary_lines(rep)] + ["</ul>", "<h2>Search space</h2>"]
    columns, rows = space_rows(rep.space)
    if rows:
        parts.append(table(columns, rows))
    if rep.space_text:
        parts.append(f"<pre>{html.escape(rep.space_text)}</pre>")
    parts.append("<h2>Trials</h2>")
    if rep.trials:
        parts.append(table(*trial_rows(rep)))
    parts += ["<h2>Best configuration</h2>", table(("key", "value"), best_config_rows(rep))]
    if rep.importances:
        parts += ["<h2>Hyperparameter importance</h2>",
                  table(("param", "importance"), [[k, (f"{v:.2f}", v)] for k, v in rep.importances.items()])]
    if images:
        parts += ["<h2>Plots</h2>"] + [figure(png, caption) for caption, png in images]
    return page(f"fer-bench sweep {run}", "\n".join(parts))
