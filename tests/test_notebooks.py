"""Every notebook in notebooks/ executes top to bottom in a fresh kernel of this interpreter (its
own assertions included), draws its plots as PNG images, and is committed with outputs stripped,
exactly as ``notebooks/make_notebooks.py`` writes it."""

from __future__ import annotations

import importlib.util
import json
import os
import sys
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")
from jupyter_client.kernelspec import KernelSpecManager  # noqa: E402
from jupyter_client.manager import KernelManager  # noqa: E402

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = ROOT / "notebooks"
NAMES = ["01_quickstart.ipynb", "02_functional_training.ipynb", "03_pytorch_style.ipynb",
         "04_kernels_and_dispatch.ipynb"]
CELL_TIMEOUT = 120


def make_kernel(folder: Path, *paths: Path) -> tuple[str, KernelSpecManager]:
    """A kernelspec that starts ipykernel in this very interpreter with ``paths`` (and the
    repository) first on its ``sys.path``."""
    spec = folder / "torsh-fn-test"
    spec.mkdir()
    pythonpath = [*map(str, paths), str(ROOT), os.environ.get("PYTHONPATH")]
    (spec / "kernel.json").write_text(json.dumps({
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "torsh_fn tests", "language": "python",
        "env": {"PYTHONPATH": os.pathsep.join(filter(None, pythonpath))},
    }))
    return "torsh-fn-test", KernelSpecManager(kernel_dirs=[str(folder)])


@pytest.fixture(scope="module")
def kernel(tmp_path_factory) -> tuple[str, KernelSpecManager]:
    return make_kernel(tmp_path_factory.mktemp("kernels"))


def execute(name: str, kernel) -> nbformat.NotebookNode:
    kernel_name, specs = kernel
    nb = nbformat.read(NOTEBOOKS / name, as_version=4)
    manager = KernelManager(kernel_name=kernel_name, kernel_spec_manager=specs)
    client = nbclient.NotebookClient(nb, km=manager, timeout=CELL_TIMEOUT,
                                     resources={"metadata": {"path": str(NOTEBOOKS)}})
    client.execute()  # raises CellExecutionError, with the cell and traceback, on any error
    return nb


def test_the_notebooks_are_the_ones_listed():
    assert sorted(p.name for p in NOTEBOOKS.glob("*.ipynb")) == NAMES


@pytest.mark.parametrize("name", NAMES)
def test_notebook_executes_top_to_bottom_and_draws_its_plots(name, kernel):
    nb = execute(name, kernel)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert all(c.execution_count is not None for c in code), "every code cell ran"
    errors = [o for c in code for o in c.outputs if o.output_type == "error"]
    assert not errors
    plots = [c for c in code if c.source.startswith("# plot")]
    assert len(plots) == {"02_functional_training.ipynb": 1,
                          "04_kernels_and_dispatch.ipynb": 2}.get(name, 0)
    for cell in plots:
        images = [o for o in cell.outputs if "image/png" in o.get("data", {})]
        assert len(images) == 1, f"{cell.source.splitlines()[0]!r} drew no PNG"


def test_pytorch_style_notebook_skips_its_torch_cells_without_pytorch(tmp_path):
    hidden = tmp_path / "no_torch"
    (hidden / "torch").mkdir(parents=True)
    (hidden / "torch" / "__init__.py").write_text("raise ImportError('No module named torch')\n")
    (tmp_path / "kernels").mkdir()
    nb = execute("03_pytorch_style.ipynb", make_kernel(tmp_path / "kernels", hidden))
    printed = "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code"
                      for o in c.outputs)
    assert "PyTorch is not installed: skipping the cells that load its weights" in printed
    assert "torsh_fn computes what PyTorch computes" not in printed


@pytest.mark.parametrize("name", NAMES)
def test_committed_notebook_has_no_outputs(name):
    nb = nbformat.read(NOTEBOOKS / name, as_version=4)
    nbformat.validate(nb)
    for cell in nb.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None, cell.id
        assert set(cell.metadata) <= {"tags"}, f"{cell.id} carries {sorted(cell.metadata)}"
    assert set(nb.metadata) == {"kernelspec", "language_info"}


def test_committed_notebooks_are_what_make_notebooks_writes():
    spec = importlib.util.spec_from_file_location("make_notebooks",
                                                  NOTEBOOKS / "make_notebooks.py")
    make_notebooks = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(make_notebooks)
    assert list(make_notebooks.NOTEBOOKS) == NAMES
    assert make_notebooks.main(["--check"]) == 0, "run python notebooks/make_notebooks.py"
