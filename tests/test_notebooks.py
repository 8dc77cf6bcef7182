"""Every notebook in notebooks/ runs top to bottom, headless, in a real kernel, without an error."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.jupyter_env import DIRS, jupyter_env

pytestmark = pytest.mark.slow

NOTEBOOKS = sorted((Path(__file__).resolve().parent.parent / "notebooks").glob("*.ipynb"))


def test_there_are_notebooks() -> None:
    assert {p.name for p in NOTEBOOKS} >= {"quickstart.ipynb", "pipeline.ipynb"}


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_executes(path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import nbformat
    from nbclient import NotebookClient

    env = jupyter_env(tmp_path / "jupyter")
    for name in (*DIRS, "JUPYTER_PATH"):  # nbclient's own kernel manager writes its connection file here
        monkeypatch.setenv(name, env[name])
    work = tmp_path / "work"
    work.mkdir()
    shutil.copy(path, work / path.name)
    nb = nbformat.read(work / path.name, as_version=4)
    client = NotebookClient(
        nb, timeout=600, kernel_name="python3", allow_errors=False, resources={"metadata": {"path": str(work)}}
    )
    client.execute(env=env, cwd=str(work))  # raises CellExecutionError with the traceback
    errors = [
        o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []) if o.get("output_type") == "error"
    ]
    assert not errors
    if path.stem == "quickstart":
        text = "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []))
        assert "reply:" in text and "rome" in text.lower()
