"""``fer-bench perf``: measured speed ratios (one module per benchmark, ``runner`` ties them)."""
