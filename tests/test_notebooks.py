"""Executes every notebook in notebooks/ top to bottom, offline, in a fresh kernel.

Each notebook runs in its own kernel, started with the interpreter that runs pytest (so a
fresh clone's `make test` uses the project's virtualenv, whatever kernels Jupyter knows), in a
temporary working directory, with `KERAS_SE_NOTEBOOK_FAST=1` (small sizes) and
`KERAS_SE_OFFLINE=1` (no network). A cell that raises fails the test. The notebooks are
independent: pytest-xdist runs them in parallel.
"""

import json
import sys
import time
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
from jupyter_client.kernelspec import KernelSpecManager  # noqa: E402
from jupyter_client.manager import KernelManager  # noqa: E402

NOTEBOOK_DIR = Path(__file__).resolve().parent.parent / "notebooks"
NOTEBOOKS = sorted(NOTEBOOK_DIR.glob("*.ipynb"))
CELL_TIMEOUT_S = 300
KERNEL_NAME = "keras-se-tests"


def kernel_manager(root: Path) -> KernelManager:
    """A kernel manager whose only kernel is `sys.executable -m ipykernel_launcher`."""
    spec_dir = root / "kernels" / KERNEL_NAME
    spec_dir.mkdir(parents=True)
    spec = {
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": f"keras-se tests ({sys.executable})",
        "language": "python",
    }
    (spec_dir / "kernel.json").write_text(json.dumps(spec))
    specs = KernelSpecManager(kernel_dirs=[str(root / "kernels")])
    return KernelManager(kernel_name=KERNEL_NAME, kernel_spec_manager=specs)


def test_every_notebook_is_listed():
    names = [p.name for p in NOTEBOOKS]
    assert names == [
        "01_retrofit_resnet50.ipynb",
        "02_finetune_mobilenet.ipynb",
        "03_what_se_learns.ipynb",
        "04_keras_hub.ipynb",
    ]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_is_committed_clean(path):
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert code
    assert all(c.outputs == [] and c.execution_count is None for c in code), (
        "commit notebooks without outputs (clear them with nbformat)"
    )
    # A parameter cell that reads the fast switch, so the suite can shrink the sizes.
    params = [c for c in code if "parameters" in c.metadata.get("tags", [])]
    assert len(params) == 1 and "KERAS_SE_NOTEBOOK_FAST" in params[0].source


@pytest.mark.heavy
@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_runs_offline(path, tmp_path, monkeypatch):
    if path.name == "04_keras_hub.ipynb":
        pytest.importorskip("keras_hub")  # the optional extra keras-se[hub]
    work = tmp_path / "work"
    work.mkdir()
    # The kernel inherits this environment.
    monkeypatch.setenv("KERAS_SE_NOTEBOOK_FAST", "1")
    monkeypatch.setenv("KERAS_SE_OFFLINE", "1")
    monkeypatch.setenv("TF_CPP_MIN_LOG_LEVEL", "2")
    monkeypatch.setenv("TFDS_DATA_DIR", str(tmp_path / "tensorflow_datasets"))
    monkeypatch.setenv("PYDEVD_DISABLE_FILE_VALIDATION", "1")
    before = sorted(p.name for p in NOTEBOOK_DIR.iterdir())

    nb = nbformat.read(path, as_version=4)
    km = kernel_manager(tmp_path)
    client = nbclient.NotebookClient(
        nb, km=km, timeout=CELL_TIMEOUT_S, resources={"metadata": {"path": str(work)}}
    )
    start = time.perf_counter()
    try:
        client.execute()  # raises CellExecutionError on the first failing cell
    finally:
        # nbclient leaves a kernel it did not create running: shut it down now, not
        # when the whole suite ends (each holds 1-2 GB).
        if km.has_kernel:
            km.shutdown_kernel(now=True)
    print(f"{path.name}: {time.perf_counter() - start:.0f} s")
    assert not km.is_alive()

    code = [c for c in nb.cells if c.cell_type == "code"]
    assert [c.execution_count for c in code] == list(range(1, len(code) + 1))
    # The fast switch reached the kernel: the parameter cell's output says so.
    params = next(c for c in code if "parameters" in c.metadata.get("tags", []))
    shown = "".join(o.get("text", "") for o in params.outputs if o.output_type == "stream")
    assert "fast mode: True" in shown, shown
    # Nothing was written next to the notebooks.
    assert sorted(p.name for p in NOTEBOOK_DIR.iterdir()) == before
