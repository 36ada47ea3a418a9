# make fit: set up .venv (torch's CPU build first) and train the default example.
# make test: the same set-up, then the linter and the whole test suite.
VENV ?= .venv
PYTHON ?= python3
PY := $(VENV)/bin/python
TORCH ?= torch==2.13.0
CONFIG ?= configs/iris.yaml

.PHONY: fit test lint bench data clean

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	# torch first, pinned: a bare `torch` requirement would fetch a multi-GB CUDA build
	$(PY) -m pip install --quiet --disable-pip-version-check "$(TORCH)"
	$(PY) -m pip install --quiet --disable-pip-version-check -e ".[dev]"
	touch $@

fit: $(VENV)/.installed
	$(VENV)/bin/dltrain fit $(CONFIG)

test: $(VENV)/.installed lint
	$(PY) -m pytest

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check dltrain tests benchmarks scripts

# the suite against the peers (Lightning and Keras from the bench extra), then the whole process
# (fit, predict, evaluate from the shell) against hand-written scripts; writes benchmarks/RESULTS.md,
# benchmarks/RESULTS-whole.md, benchmarks/RESULTS-tune.md (dltrain tune against separate fits) and their
# tables in README.md. The single-workload scripts run on their
# own: python benchmarks/NAME.py
bench: $(VENV)/.installed
	$(PY) -m pip install --quiet --disable-pip-version-check -e ".[bench]"
	$(PY) -m benchmarks
	$(PY) -m benchmarks.whole
	$(PY) -m benchmarks.tune
	$(PY) -m benchmarks.serve

# generated example data (kept out of git)
data: $(VENV)/.installed
	$(PY) scripts/make_shapes.py
	$(PY) scripts/make_sequences.py
	$(PY) scripts/make_text.py
	$(PY) scripts/make_audio.py
	$(PY) scripts/make_video.py

clean:
	rm -rf runs .pytest_cache
