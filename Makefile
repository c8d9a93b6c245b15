# pixer: `make demo` runs the whole job on built-in simulated data, `make test` runs the tests.
# Both create the virtual environment first (CPU torch wheel, pinned dependencies).
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
DEMO ?= demo_out
DEMO_DIAMETER ?= 120

.PHONY: env demo test bench clean

env: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml requirements.lock
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -r requirements.lock
	$(PY) -m pip install -q --no-deps -e .
	touch $@

demo: env
	$(VENV)/bin/pixer simulate --out $(DEMO)/train_data --n 8 --size 1024 --apix 2.0 --snr-db -10 --seed 1
	$(VENV)/bin/pixer simulate --out $(DEMO)/test_data --n 4 --size 1024 --apix 2.0 --snr-db -10 --seed 2
	$(VENV)/bin/pixer train --micrographs $(DEMO)/train_data/micrographs.star --coords $(DEMO)/train_data/particles.star \
	    --diameter $(DEMO_DIAMETER) --out $(DEMO)/model --seed 0
	$(VENV)/bin/pixer pick --micrographs $(DEMO)/test_data/micrographs --model $(DEMO)/model \
	    --diameter $(DEMO_DIAMETER) --out $(DEMO)/picks
	$(VENV)/bin/pixer evaluate --picks $(DEMO)/picks --truth $(DEMO)/test_data/particles.star \
	    --diameter $(DEMO_DIAMETER) --out $(DEMO)/evaluation
	@echo "demo outputs: $(DEMO)/ (picks in $(DEMO)/picks, metrics in $(DEMO)/evaluation/metrics.json)"

test: env
	$(PY) -m pytest -q -p no:cacheprovider

bench: env
	$(PY) bench/bench_simulate.py
	$(PY) bench/bench_localmax.py
	$(PY) bench/bench_train.py
	$(PY) bench/bench_pick.py
	$(PY) bench/bench_labels.py
	$(PY) bench/bench_dask.py

clean:
	rm -rf $(DEMO)
