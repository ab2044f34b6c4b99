"""The package's shape: a Keras-only core, the TensorFlow edge loaded on first use, and one
door to Keras internals. Each import check runs in a fresh interpreter."""

import ast
import importlib.util
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import keras
import pytest

import keras_se

pytestmark = pytest.mark.core

ROOT = Path(__file__).resolve().parent.parent
CORE_MODULES = [
    "keras_se/__init__.py",
    "keras_se/_core.py",
    "keras_se/_files.py",
    "keras_se/_options.py",
    "keras_se/_keras_compat.py",
    "keras_se/batchnorm.py",
    "keras_se/defaults.py",
    "keras_se/diagnose.py",
    "keras_se/layers.py",
    "keras_se/widths.py",
    "keras_se/_torch_block.py",
    "keras_se/sites.py",
    "keras_se/site_finder.py",
    "keras_se/rewrite.py",
    "keras_se/transfer.py",
    "keras_se/models.py",
    "keras_se/preprocessing.py",
    *sorted(str(p.relative_to(ROOT)) for p in (ROOT / "keras_se" / "inspect").glob("*.py")),
    *sorted(str(p.relative_to(ROOT)) for p in (ROOT / "keras_se" / "hub").glob("*.py")),
    *sorted(str(p.relative_to(ROOT)) for p in (ROOT / "applications").glob("*.py")),
]
EDGE_PACKAGES = ("tensorflow", "tensorflow_datasets", "keras_se.data", "keras_se.tfds_data",
                 "keras_se.finetune", "keras_se.export", "keras_se.distribute", "keras_se.cli")


def _fresh(code, backend=None):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    if backend:
        env["KERAS_BACKEND"] = backend
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                          cwd=str(ROOT), timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


# On a backend other than TensorFlow, the child runs as if TensorFlow were not
# installed: with TensorFlow installed, Keras itself imports it on JAX and PyTorch too
# (`serialize_keras_object` checks `tf.available`, which imports it, in every
# `get_config`), so only its absence shows that keras_se does not need it. A `None` in
# `sys.modules` makes `import tensorflow` fail and `importlib.util.find_spec` (which
# torch uses) say it is not there.
_HIDE_TENSORFLOW = "import sys\nsys.modules['tensorflow'] = None\n"


def test_the_core_runs_without_the_edge():
    # `import keras_se` and a rewrite load neither the command line, nor the data,
    # fine-tuning or export modules, nor tensorflow_datasets; on a backend other than
    # TensorFlow, not TensorFlow either (it is hidden: the core must run without it).
    hide = _HIDE_TENSORFLOW if keras.backend.backend() != "tensorflow" else ""
    result = _fresh(
        hide + "import json, sys, time\n"
        "t = time.perf_counter(); import keras_se; t = time.perf_counter() - t\n"
        "import keras\n"
        "base = keras.applications.MobileNetV2(weights=None, input_shape=(32, 32, 3), alpha=0.35)\n"
        "se = keras_se.add_se_blocks(base)\n"
        "print(json.dumps({'modules': sorted(m for m, v in sys.modules.items() if v is not None"
        " and m.split('.')[0] in ('keras_se', 'tensorflow', 'tensorflow_datasets')),"
        " 'backend': keras.backend.backend(), 'sites': len(se.layers) - len(base.layers),"
        " 'seconds': t}))\n",
        backend=keras.backend.backend(),
    )
    modules = set(result["modules"])
    assert result["sites"] == 27
    assert not any(m == p or m.startswith(p + ".") for m in modules for p in EDGE_PACKAGES
                   if p != "tensorflow")
    if result["backend"] != "tensorflow":
        assert not any(m.split(".")[0] == "tensorflow" for m in modules)
    assert "keras_se.layers" in modules and "keras_se.rewrite" in modules


def test_edge_names_load_on_first_use():
    pytest.importorskip("tensorflow", reason="the edge needs TensorFlow")
    result = _fresh(
        "import json, sys, keras_se\n"
        "before = 'keras_se.export' in sys.modules\n"
        "fn = keras_se.export_saved_model\n"
        "import keras_se.export as E\n"
        "print(json.dumps({'before': before, 'same': fn is E.export_saved_model,"
        " 'after': 'keras_se.export' in sys.modules}))\n"
    )
    assert result == {"before": False, "same": True, "after": True}


def test_every_public_name_resolves():
    for name in keras_se.__all__:
        # The edge's names need TensorFlow, absent from the floor's venv.
        if name in keras_se._LAZY and importlib.util.find_spec("tensorflow") is None:
            continue
        assert getattr(keras_se, name) is not None, name
    assert "load_data" in dir(keras_se)
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        keras_se.nope  # noqa: B018


def _top_level_imports(path):
    tree = ast.parse((ROOT / path).read_text())
    names = []
    for node in tree.body:
        if isinstance(node, ast.Import):
            names += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.append(node.module)
    return names


@pytest.mark.parametrize("path", CORE_MODULES)
def test_core_modules_import_no_edge_module(path):
    # Arrows point from the edge to the core, never back.
    for name in _top_level_imports(path):
        assert not any(name == p or name.startswith(p + ".") for p in EDGE_PACKAGES), (path, name)


def test_private_keras_access_goes_through_one_module():
    private = re.compile(
        r"keras\.src|\._(nodes_by_depth|inbound_nodes|keras_history|flatten_layers|"
        r"compile_config|inputs_struct|run_through_graph|functional)\b|\._layers\b"
    )
    offenders = []
    for folder in ("keras_se", "applications", "benchmarks"):
        for path in sorted((ROOT / folder).rglob("*.py")):
            if path.name == "_keras_compat.py":
                continue
            for i, line in enumerate(path.read_text().splitlines(), 1):
                if private.search(line):
                    offenders.append(f"{path.relative_to(ROOT)}:{i}: {line.strip()}")
    assert offenders == []


def test_data_keeps_the_names_that_moved_to_tfds_data():
    pytest.importorskip("tensorflow", reason="the edge needs TensorFlow")
    from keras_se import data, tfds_data

    for name in ("NeedsNetworkError", "check_can_download", "tfds_builder"):
        assert getattr(data, name) is getattr(tfds_data, name), name


def test_the_stderr_filter_runs_only_for_the_command_line():
    result = _fresh(
        "import json, os, sys\n"
        "before = (os.fstat(2).st_ino, sys.stderr)\n"
        "import keras_se\n"
        "print(json.dumps({'cli': 'keras_se.cli' in sys.modules,"
        " 'same_stderr': before == (os.fstat(2).st_ino, sys.stderr)}))\n"
    )
    assert result == {"cli": False, "same_stderr": True}


def _imported_by(argv):
    """`python -X importtime -m keras_se *argv`: (process, top-level packages imported)."""
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    proc = subprocess.run([sys.executable, "-X", "importtime", "-m", "keras_se", *argv],
                          capture_output=True, text=True, env=env, cwd=str(ROOT), timeout=300)
    modules = re.findall(r"^import time:\s+\d+ \|\s+\d+ \|\s+(\S+)$", proc.stderr, re.M)
    assert "keras_se.cli" in modules  # the parse reads this output right
    return proc, {m.split(".")[0] for m in modules}


@pytest.mark.parametrize("argv, code, text", [
    (["--help"], 0, "Squeeze-and-Excitation for Keras models"),
    (["--version"], 0, "keras-se " + keras_se.__version__),
    (["finetune", "--help"], 0, "--schedule {cosine,constant}"),
    (["finetune", "m", "--epochs", "0"], 2,
     "keras-se finetune: error: argument --epochs: expected a positive integer, got '0'"),
    (["retrofit", "resnet50", "--placement", "everywhere"], 2, "invalid choice: 'everywhere'"),
], ids=["help", "version", "command-help", "bad-value", "bad-choice"])
def test_the_command_line_parses_before_keras_loads(argv, code, text):
    # `--help` builds every sub-command's parser; none of it, nor a usage error, may
    # load Keras or a backend (it took 4 s when the parser read keras_se.layers).
    proc, packages = _imported_by(argv)
    assert proc.returncode == code, proc.stderr[-2000:]
    assert text in (proc.stdout if code == 0 else proc.stderr)
    assert not packages & {"keras", "tensorflow", "jax", "torch", "tensorflow_datasets"}


def test_the_command_lines_deferred_core_names_resolve():
    # In the command line's process `keras_se` defers the core; its names still resolve
    # on first use (loading Keras). `run` loads them before a command's code runs: the
    # subprocess tests of tests/test_cli.py and test_backends.py run real commands.
    result = _fresh(
        "import json, sys\n"
        "sys.argv[0] = 'keras-se'\n"
        "import keras_se\n"
        "before = 'keras' in sys.modules\n"
        "from keras_se import add_se_blocks\n"
        "print(json.dumps({'before': before, 'after': 'keras' in sys.modules,"
        " 'same': add_se_blocks is sys.modules['keras_se.rewrite'].add_se_blocks,"
        " 'listed': 'SqueezeExcite' in dir(keras_se),"
        " 'core': sorted(n for n in keras_se.__all__ if n in vars(keras_se))}))\n"
    )
    assert result["before"] is False and result["after"] is True and result["same"] is True
    assert result["listed"] is True
    assert result["core"] == sorted([
        "PLACEMENTS", "NoSitesError", "SEReport", "Site", "Skipped", "SqueezeExcite",
        "__version__", "add_classifier_head", "add_se_blocks", "find_se_sites",
        "freeze_backbone", "from_preset", "make_divisible"])


def test_options_need_nothing():
    # The option names the parser offers are defined once, in a module with no imports.
    assert _top_level_imports("keras_se/_options.py") == []
    from keras_se import _options, layers, sites

    assert layers.GATES is _options.GATES and sites.PLACEMENTS is _options.PLACEMENTS


def test_version_is_declared_once():
    setup = (ROOT / "setup.py").read_text()
    assert "keras_se/__init__.py" in setup and "version=VERSION" in setup
    assert re.fullmatch(r"\d+\.\d+\.\d+", keras_se.__version__)


def test_setup_lists_every_package():
    # setup.py names its packages one by one: a new sub-package must be added there,
    # or an installed keras-se lacks it.
    setup = (ROOT / "setup.py").read_text()
    for init in sorted((ROOT / "keras_se").rglob("__init__.py")):
        package = ".".join(init.parent.relative_to(ROOT).parts)
        assert f'"{package}"' in setup, package
