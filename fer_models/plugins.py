"""``$FER_BENCH_PLUGINS``: third-party modules (comma-separated) that register models, voice
feature kinds or search families when imported. The one place that reads the variable: the voice
features import these modules on the first unknown name, ``bench.families`` on the first unknown
family, and ``bench.sweep.tune_backend`` carries the variable to a cluster's workers."""
from __future__ import annotations

import os

PLUGINS_ENV = "FER_BENCH_PLUGINS"


def env_plugin_modules() -> list[str]:
    """The module names in ``$FER_BENCH_PLUGINS``, in order, blanks dropped."""
    return [m.strip() for m in os.environ.get(PLUGINS_ENV, "").split(",") if m.strip()]
