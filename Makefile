# Two commands on a fresh machine with only Python 3 and make: `make demo`, `make test`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
TEST_STAMP := $(VENV)/.installed-test
# The core suite also runs against the lowest Keras setup.py accepts, in a venv with
# no TensorFlow (Keras on JAX): the declared floor is a tested one.
CORE_VENV := .venv-core
CORE_PY := $(CORE_VENV)/bin/python
CORE_STAMP := $(CORE_VENV)/.installed
KERAS_FLOOR := $(shell sed -n 's/.*"keras>=\([0-9.]*\),.*/\1/p' setup.py)
export TF_CPP_MIN_LOG_LEVEL ?= 2
# pytest-xdist workers; CI machines have 2 cores.
WORKERS ?= 2
PYTEST := -m pytest -n $(WORKERS) --dist loadgroup -p no:cacheprovider
# JAX compiles every eager op and every random initializer once per shape (about 1 s
# each for a kernel's threefry draw on a busy CPU): the core suite on JAX shares one
# persistent compilation cache across its workers and the floor run, and XLA skips
# LLVM's costly optimisations for these tiny test programs. Optimisation level 1, not 0:
# level 0 runs the random initializers 3x slower (16.8M values: 0.61 s vs 0.20 s), and
# from a cold cache the core suite took 3:19 at level 1 against 3:38 at level 0.
# The TensorFlow suite's JAX child processes (tests/test_backends.py) share the cache
# too: they build the same small models (that file: 117 s -> 97 s on 2 workers).
JAX_CACHE_ENV := JAX_COMPILATION_CACHE_DIR=$(CURDIR)/.cache/jax \
	JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS=0 JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES=-1
JAX_TEST_ENV := KERAS_BACKEND=jax $(JAX_CACHE_ENV) \
	XLA_FLAGS="--xla_backend_optimization_level=1 --xla_llvm_disable_expensive_passes=true"

.PHONY: venv demo test test-tf test-jax test-torch test-floor lint bench table clean

$(STAMP): setup.py
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e .
	touch $(STAMP)

# The test extras: every backend, keras-hub, ONNX, timm. PyPI's Linux torch wheel
# depends on triton, which crashes a process that imported TensorFlow first (TF 2.21);
# triton serves only GPU kernels (torch.compile), so the test venv drops it.
$(TEST_STAMP): $(STAMP)
	$(PY) -m pip install -q -e ".[test,all]"
	$(PY) -m pip uninstall -y -q triton 2>/dev/null || true
	touch $(TEST_STAMP)

$(CORE_STAMP): setup.py
	test -x $(CORE_PY) || $(PYTHON) -m venv $(CORE_VENV)
	$(CORE_PY) -m pip install -q --upgrade pip
	$(CORE_PY) -m pip install -q "keras==$(KERAS_FLOOR).0" "jax[cpu]" pytest pytest-xdist matplotlib pillow
	$(CORE_PY) -m pip install -q --no-deps -e .
	touch $(CORE_STAMP)

venv: $(STAMP)

demo: $(STAMP)
	$(PY) -m keras_se demo

lint: $(TEST_STAMP)
	$(PY) -m ruff check keras_se applications tests benchmarks

test: lint test-tf test-jax test-torch test-floor

test-tf: $(TEST_STAMP)
	$(JAX_CACHE_ENV) $(PY) $(PYTEST) --durations=20 --doctest-modules tests keras_se applications

# On JAX the largest zoo models (marked heavy: InceptionResNetV2, NASNet, ConvNeXt-Large/
# XLarge, ResNet152, ...) add about 2.5 minutes (JAX compiles every initializer and op for
# its shapes, and InceptionResNetV2's gradient): 5:53 with them, 3:26 without, cold cache.
test-jax: $(TEST_STAMP)
	$(JAX_TEST_ENV) $(PY) $(PYTEST) --durations=5 -m core tests

test-torch: $(TEST_STAMP)
	KERAS_BACKEND=torch $(PY) $(PYTEST) --durations=5 -m core tests

# The floor checks keras-se's use of the Keras API at the lowest version it accepts:
# the layer, sites, the rewrite (on five keras.applications models), the helpers,
# inspect, the zoo's other tests. Building every zoo constructor (the contract) adds no
# Keras API to that; it runs on the three backends at the current Keras.
test-floor: $(CORE_STAMP)
	$(JAX_TEST_ENV) $(CORE_PY) $(PYTEST) --durations=5 -m "core and not heavy" \
		--deselect tests/test_applications.py::test_constructor_contract tests

bench: $(TEST_STAMP)
	for b in bench_layer bench_models profile_models bench_memory bench_rewrite bench_litert bench_fused bench_int8 bench_onnx bench_real_data bench_backends bench_squeeze_backends bench_cli; do $(PY) benchmarks/$$b.py || exit 1; done

table: $(TEST_STAMP)
	$(PY) benchmarks/model_table.py --write-readme
	$(PY) benchmarks/placement_table.py --write-readme
	$(PY) benchmarks/hub_table.py --write-readme

clean:
	rm -rf $(VENV) $(CORE_VENV) *.egg-info .pytest_cache .cache
