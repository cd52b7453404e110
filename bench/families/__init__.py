"""Search families: what the word in ``fer-bench search <family>`` stands for.

A family names the data it needs (a dataset adapter's ``modality``), the models it searches (the
model registry's ``modality``), where its search spaces live, and the few steps that are its own:
keys fixed for every trial, a driver-side step before the sweep (fusion picks its encoders'
checkpoints), extra per-epoch validation metrics (MIC's identity-leakage probe). ``cli``,
``spaces``, ``api`` and ``trainable`` ask this registry and never name a family.

A family with code of its own lives in one module of this package (``mic``, ``fusion``) that
registers itself; the built-in ones are imported at the end of this file. A third-party family is a
module that calls ``register_family``, found through the ``fer_bench.families`` entry-point group
or the ``FER_BENCH_PLUGINS=module,module`` environment variable (``load_plugins``).
"""
from __future__ import annotations

from bench.families.registry import (  # noqa: F401  (the package's names)
    DEFAULT_FAMILY,
    ENTRY_POINT_GROUP,
    FAMILIES,
    PLUGINS_ENV,
    EpochMetrics,
    Preparation,
    Prepare,
    SearchFamily,
    env_plugin_modules,
    family_names,
    family_of_model,
    get_family,
    load_plugins,
    register_family,
)

# The built-in families, in the order the CLI lists them; those with steps of their own register
# from their modules.
register_family(SearchFamily("face", data_modality="face", summary="still-image face expression models"))
register_family(SearchFamily("video", data_modality="video", summary="clip models on face video"))
from bench.families import mic  # noqa: E402,F401  (registers "mic")

register_family(SearchFamily("voice", data_modality="voice", summary="speech emotion models"))
from bench.families import fusion  # noqa: E402,F401  (registers "fusion")
