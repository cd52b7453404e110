"""The sweep: search spaces (``spaces``), what can run before Ray starts (``feasibility``), the
expected duration (``budget``), Ray Tune and Train (``tune_backend``, ``ray_trial``, ``ddp``),
reading a finished experiment (``trials``), retraining winners on every fold (``benchmark``) and
re-running one record (``reproduce``).

The only package that imports Ray (inside functions). May import ``bench.training``,
``bench.results``, ``bench.families``, ``bench.data`` and ``fer_models``; never ``bench.reports``,
``bench.inference`` or the CLI.
"""
