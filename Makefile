# Two commands on a fresh machine with only Python 3 and make: `make demo`, `make test`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
export TF_CPP_MIN_LOG_LEVEL ?= 2
# pytest-xdist workers; CI machines have 2 cores.
WORKERS ?= 2

.PHONY: venv demo test lint bench table clean

$(STAMP): setup.py
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e ".[test]"
	touch $(STAMP)

venv: $(STAMP)

demo: $(STAMP)
	$(PY) -m keras_se demo

test: $(STAMP)
	$(PY) -m ruff check keras_se applications tests benchmarks
	$(PY) -m pytest -n $(WORKERS) --dist loadgroup --durations=20 tests

bench: $(STAMP)
	for b in bench_layer bench_models profile_models bench_memory bench_rewrite bench_litert bench_fused bench_int8; do $(PY) benchmarks/$$b.py || exit 1; done

table: $(STAMP)
	$(PY) benchmarks/model_table.py --write-readme
	$(PY) benchmarks/placement_table.py --write-readme

clean:
	rm -rf $(VENV) *.egg-info .pytest_cache
