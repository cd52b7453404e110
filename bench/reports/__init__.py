"""What people read: leaderboards (``leaderboard``, ``outputs``), one sweep's page
(``sweep_report``), hyperparameter importance (``importance``), figures (``plots``), HTML pieces
(``html_page``) and published results (``published``).

Reads records (``bench.results``) and finished sweeps (``bench.sweep.trials``, ``bench.sweep.spaces``);
trains nothing and never starts Ray.
"""
