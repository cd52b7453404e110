# `make demo` and `make test` each create .venv and install fer-bench when it is missing.
VENV   ?= .venv
PYTHON ?= python3
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test test-fast test-slow lint clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -e '.[dev]'
	touch $(STAMP)

# The main job: a real Ray Tune + Optuna + ASHA sweep on the built-in synthetic faces, then the leaderboard.
demo: $(STAMP)
	$(BIN)/fer-bench search face --dataset synthetic
	$(BIN)/fer-bench leaderboard

lint: $(STAMP)
	$(BIN)/ruff check .

# Everything CI runs: lint, the fast suite (tiny real Ray sweep included), then the slow stage.
test: test-fast test-slow

# Two test processes (pytest-xdist): each test that starts Ray starts its own, on its own ports.
test-fast: lint
	$(BIN)/python -m pytest -m "not slow" -n 2 --dist loadgroup

# pytest exits 5 when no test carries the marker; that is not a failure.
# The browser test of the leaderboard page needs Debian's chromium (CI runs as root; elsewhere it skips).
test-slow: $(STAMP)
	command -v chromium >/dev/null || { apt-get update -qq && apt-get install -y -qq chromium; } \
		|| echo "chromium could not be installed: the browser test will skip"
	$(BIN)/python -m pytest -m slow -n 2 || test $$? -eq 5

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
