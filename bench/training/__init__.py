"""One trial without Ray: its configuration (``config``), model -> data -> epochs (``trainable``,
``engine``, ``tasks``, ``metrics``), checkpoints (``checkpoint``), scikit-learn heads fitted once
(``classic_trial``) and the single test evaluation (``evaluation``).

May import ``fer_models``, ``bench.data``, ``bench.families`` (a family's per-epoch metrics) and
``bench.errors``; never Ray, ``bench.sweep``, ``bench.reports`` or the CLI.
"""
