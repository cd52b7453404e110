"""Leaderboard and sweep figures as PNG bytes. Data in, bytes out: no files, no pyplot state.

Figures are drawn on matplotlib's Agg canvas directly (``Figure`` + ``FigureCanvasAgg``) rather
than through pyplot, so nothing depends on, or changes, the process-wide backend.
"""
from __future__ import annotations

import io

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, MaxNLocator, NullFormatter

from bench.sweep.trials import COMPLETED, ERRORED, STOPPED, TrialHistory

# Identical figures give identical bytes: no timestamp or version in the PNG metadata.
_PNG_METADATA = {"Software": None}


def _png(fig: Figure) -> bytes:
    FigureCanvasAgg(fig)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, bbox_inches="tight", metadata=_PNG_METADATA)
    return buf.getvalue()


def confusion_png(confusion: list[list[int]], class_names: list[str] | None, title: str) -> bytes:
    """Row-normalised colours (recall per true class) with the counts written in each cell."""
    size = len(confusion)
    names = list(class_names or [str(i) for i in range(size)])[:size]
    totals = [sum(row) or 1 for row in confusion]
    normalised = [[v / totals[i] for v in row] for i, row in enumerate(confusion)]
    fig = Figure(figsize=(1.0 + 0.6 * size, 0.8 + 0.6 * size))
    ax = fig.add_subplot()
    image = ax.imshow(normalised, cmap="Blues", vmin=0, vmax=1)
    for i, row in enumerate(confusion):
        for j, count in enumerate(row):
            ax.text(j, i, str(count), ha="center", va="center", fontsize=8,
                    color="white" if normalised[i][j] > 0.6 else "black")
    ax.set_xticks(range(size), names, rotation=45, ha="right", fontsize=8)
    ax.set_yticks(range(size), names, fontsize=8)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title, fontsize=9)
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label="recall")
    return _png(fig)


_STATUS_STYLE = {COMPLETED: ("o", "completed"), STOPPED: ("X", "stopped by ASHA"), ERRORED: ("x", "errored")}


def learning_curves_png(trials: list[TrialHistory], metric: str, title: str,
                        rungs: list[int] | None = None, max_epochs: int | None = None) -> bytes:
    """One line per trial; the last point's marker says how it ended, dotted lines mark ASHA's rungs."""
    fig = Figure(figsize=(6.4, 4.0))
    ax = fig.add_subplot()
    labelled = set()
    for trial in trials:
        epochs, values = trial.curve(metric)
        if not epochs:
            continue
        line = ax.plot(epochs, values, linewidth=1.2, alpha=0.8)[0]
        marker, label = _STATUS_STYLE.get(trial.status, ("o", trial.status))
        ax.plot(epochs[-1:], values[-1:], marker=marker, markersize=8, color=line.get_color(), linestyle="none",
                label=None if label in labelled else label)
        labelled.add(label)
    for rung in rungs or []:
        ax.axvline(rung, color="grey", linestyle=":", linewidth=1)
    if rungs:
        ax.plot([], [], color="grey", linestyle=":", label="ASHA rung")
    if max_epochs:
        ax.set_xlim(0.8, max_epochs + 0.2)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("epoch")
    ax.set_ylabel(metric)
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3)
    if labelled:
        ax.legend(fontsize=8, loc="best")
    return _png(fig)


def importance_png(importances: dict[str, float], title: str) -> bytes:
    items = sorted(importances.items(), key=lambda kv: kv[1])
    fig = Figure(figsize=(5.6, 0.8 + 0.4 * max(1, len(items))))
    ax = fig.add_subplot()
    ax.barh([k for k, _ in items], [v for _, v in items], color="#4c72b0")
    ax.set_xlim(0, 1)
    ax.set_xlabel("fANOVA importance (sums to 1)")
    ax.set_title(title, fontsize=9)
    ax.grid(axis="x", alpha=0.3)
    return _png(fig)


def pareto_front(points: list[tuple[float, float]]) -> list[int]:
    """Indices of the points no other point beats on both axes: lower latency (x), higher score (y);
    ordered by latency."""
    order = sorted(range(len(points)), key=lambda i: (points[i][0], -points[i][1]))
    front, best = [], float("-inf")
    for i in order:
        if points[i][1] > best:
            front.append(i)
            best = points[i][1]
    return front


def pareto_png(labels: list[str], latency_ms: list[float], scores: list[float], title: str,
               score_name: str = "test UAR %") -> bytes:
    fig = Figure(figsize=(6.4, 4.0))
    ax = fig.add_subplot()
    ax.scatter(latency_ms, scores, color="#999999", zorder=2, label="configuration")
    front = pareto_front(list(zip(latency_ms, scores)))
    ax.step([latency_ms[i] for i in front], [scores[i] for i in front], where="post", color="#c44e52",
            zorder=3, label="Pareto front")
    ax.scatter([latency_ms[i] for i in front], [scores[i] for i in front], color="#c44e52", zorder=4)
    for x, y, label in zip(latency_ms, scores, labels):
        ax.annotate(label, (x, y), textcoords="offset points", xytext=(4, 4), fontsize=7)
    if latency_ms and min(latency_ms) > 0 and max(latency_ms) / min(latency_ms) > 20:
        ax.set_xscale("log")
        ax.xaxis.set_minor_formatter(NullFormatter())
    else:
        ax.xaxis.set_major_locator(MaxNLocator(nbins=6))
    # plain numbers: no offset ("+2.498") or scientific factor that makes ticks unreadable
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:.4g}"))
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:.4g}"))
    ax.set_xlabel("inference ms per sample (batch 1)")
    ax.set_ylabel(score_name)
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3)
    ax.margins(x=0.15, y=0.1)  # room for the point labels
    low, high = min(scores, default=0), max(scores, default=0)
    if high - low < 2:  # scores a fraction of a point apart: show them on a 2-point axis, not a magnified one
        middle = (low + high) / 2
        ax.set_ylim(middle - 1.2, middle + 1.2)
    ax.legend(fontsize=8, loc="best")
    return _png(fig)
