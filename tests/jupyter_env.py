"""Environment for Jupyter processes started by tests: nothing written outside a temp folder.

Config, data, runtime and IPython dirs go under ``root``; the venv's ``share/jupyter`` stays on
``JUPYTER_PATH`` so its kernelspec and the ipywidgets/anywidget lab extensions are found.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

DIRS = ("JUPYTER_CONFIG_DIR", "JUPYTER_DATA_DIR", "JUPYTER_RUNTIME_DIR", "IPYTHONDIR")


def jupyter_env(root: Path) -> dict[str, str]:
    """``os.environ`` plus the Jupyter dirs in ``root``, offline models and no OpenAI key."""
    env = dict(os.environ)
    for name in DIRS:
        path = root / name.lower()
        path.mkdir(parents=True, exist_ok=True)
        env[name] = str(path)
    share = str(Path(sys.prefix) / "share" / "jupyter")
    env["JUPYTER_PATH"] = os.pathsep.join(p for p in (share, env.get("JUPYTER_PATH")) if p)
    env["HF_HUB_OFFLINE"] = "1"
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    env["PYDEVD_DISABLE_FILE_VALIDATION"] = "1"
    for name in ("OPENAI_API_KEY", "OPENAI_BASE_URL"):
        env.pop(name, None)
    return env
