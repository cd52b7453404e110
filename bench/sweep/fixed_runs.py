"""One run of a benchmark grid as the driver sees it (``FixedRun``) and where it sits in the grid
(``job_index``): read by ``tune_backend`` after fit and by ``run_callbacks`` as each run ends."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass
class FixedRun:
    config: dict
    checkpoint: str | None  # local copy of the best-on-validation checkpoint
    val: dict
    epochs: int
    seconds: float
    error: str | None


def job_index(configs: list[dict], config: dict) -> int:
    """Where ``config`` is in the grid ``configs``, compared as JSON: a resumed grid reads its jobs
    back from JSON while Tune restores the trials' configs from its pickle (a tuple is a list then)."""
    import json

    def key(c: dict) -> str:
        return json.dumps(c, sort_keys=True, default=str)

    return [key(c) for c in configs].index(key(config))
