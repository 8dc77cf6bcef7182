"""What a user gets from the registry: one top-level package, an importable core without UI toolkits,
polite failures, and ``voicechat app`` working from a plain (non-editable) install of the wheel.
"""

from __future__ import annotations

import ast
import importlib.util
import json
import os
import re
import shutil
import site
import subprocess
import sys
import urllib.request
import zipfile
from pathlib import Path

import pytest

from tests.streamlit_harness import ROOT, free_port, wait_for

CORE = [
    "voicechat",
    "voicechat.engine",
    "voicechat.conversation_thread",
    "voicechat.ui_state",
    "voicechat.cli",
    "voicechat.backends",
    "voicechat.file_turns",
    "voicechat.stt.openai",
    "voicechat.llm.openai",
    "voicechat.tts.openai",
    "voicechat.stt.local",
    "voicechat.llm.local",
    "voicechat.tts.local",
]


def test_core_imports_neither_streamlit_nor_ipywidgets_nor_torch() -> None:
    code = (
        "import importlib, sys\n"
        f"for m in {CORE!r}: importlib.import_module(m)\n"
        "bad = [m for m in ('streamlit', 'ipywidgets', 'anywidget', 'torch') if m in sys.modules]\n"
        "print(','.join(bad))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == ""


def _imports(path: Path, modules: set[str]) -> set[str]:
    """The voicechat modules ``path`` imports anywhere in it, deferred imports inside functions too."""
    found: set[str] = set()
    tree = ast.parse(path.read_text(encoding="utf-8"))
    typing_only = {  # imports under `if TYPE_CHECKING:` never run, so they make no circle
        id(n)
        for block in ast.walk(tree)
        if isinstance(block, ast.If) and "TYPE_CHECKING" in ast.unparse(block.test)
        for stmt in block.body
        for n in ast.walk(stmt)
    }
    for node in ast.walk(tree):
        if id(node) in typing_only:
            continue
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name in modules)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            subs = {f"{node.module}.{a.name}" for a in node.names}
            found.update(subs & modules)
            if subs - modules and node.module in modules:  # names from the module itself
                found.add(node.module)
    return found


def import_circles() -> list[str]:
    """The voicechat modules that import themselves through others, deferred imports included."""
    files = {
        ".".join(p.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__"): p
        for p in (ROOT / "voicechat").rglob("*.py")
    }
    graph = {name: _imports(path, set(files)) - {name} for name, path in files.items()}
    circles = []
    for start in graph:
        seen, todo = set(), list(graph[start])
        while todo:
            name = todo.pop()
            if name == start:
                circles.append(start)
                break
            if name not in seen:
                seen.add(name)
                todo.extend(graph[name])
    return sorted(circles)


def test_no_module_imports_itself_round_a_circle() -> None:
    # A circle only works while every side defers its import to a function: the benchmark's
    # capacity and transport runs did. Found by walking the import graph from every module, in a
    # fresh interpreter: CPython 3.11.7's ast.parse raised "AST constructor recursion depth
    # mismatch" late in a full pytest run, after other tests had parsed deep trees.
    code = "from tests.test_packaging import import_circles; print(','.join(import_circles()))"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    circles = [c for c in proc.stdout.strip().split(",") if c]
    assert not circles, f"these modules import themselves through others: {circles}"


def test_cli_bad_setting_is_one_line_without_traceback() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "voicechat", "doctor"],
        capture_output=True,
        text=True,
        timeout=60,
        env={"PATH": "/usr/bin:/bin", "VOICECHAT_MAX_TOKENS": "many"},
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().startswith("error: ") and "VOICECHAT_MAX_TOKENS" in proc.stderr
    assert "Traceback" not in proc.stderr


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``pip wheel`` of a clean copy of the checkout: a stale ``build/`` folder in it can't leak in.

    Offline: with setuptools already installed here the build runs without an isolated build env;
    without it (a Python 3.12+ venv has none) pip fetches the build backend from PyPI.
    """
    tmp = tmp_path_factory.mktemp("wheel")
    src, out = tmp / "src", tmp / "dist"
    # The whole checkout (a new top-level folder must show up in the wheel check), minus build output and caches.
    shutil.copytree(
        ROOT,
        src,
        ignore=shutil.ignore_patterns(
            ".git",
            ".env",
            ".venv",
            "venv",
            "build",
            "dist",
            "*.egg-info",
            "__pycache__",
            "*.pyc",
            ".*_cache",
            "test-artifacts",
            "node_modules",
        ),
    )
    offline = ["--no-build-isolation", "--no-index"] if importlib.util.find_spec("setuptools") else []
    cmd = [sys.executable, "-m", "pip", "wheel", "--no-deps", "-w", str(out), str(src), *offline]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    (built,) = out.glob("voicechat-*.whl")
    return built


@pytest.mark.slow
def test_wheel_installs_only_the_voicechat_package(wheel: Path) -> None:
    names = zipfile.ZipFile(wheel).namelist()
    assert {n.split("/")[0] for n in names} == {"voicechat", f"{wheel.name.split('-py')[0]}.dist-info"}
    # What `voicechat app` and the Streamlit page need at run time is inside it.
    assert {
        "voicechat/streamlit/dashboard/voicechat_dashboard.py",
        "voicechat/streamlit/browser_stt/speech.js",
        "voicechat/notebook/voicechat.js",
        "voicechat/py.typed",
    } <= set(names)


RECORDINGS = (".wav", ".flac", ".mp3", ".ogg", ".opus", ".webm", ".m4a")


@pytest.mark.slow
def test_wheel_holds_the_product_and_no_test_rig(wheel: Path) -> None:
    # The test doubles and the benchmark's recordings live in voicechat-bench-kit (bench_kit/), which
    # only the bench extra installs: an app built on voicechat downloads none of them.
    with zipfile.ZipFile(wheel) as whl:
        names = whl.namelist()
        sources = {n: whl.read(n).decode("utf-8") for n in names if n.endswith(".py")}
    recordings = [n for n in names if n.lower().endswith(RECORDINGS) or n.endswith("manifest.json")]
    assert not recordings, f"recordings in the product's wheel: {recordings}"
    doubles = [
        n
        for n, text in sources.items()
        if "loopback_server" in n or re.search(r"^class Fake\w*|^def serve\(", text, re.MULTILINE)
    ]
    assert not doubles, f"test doubles in the product's wheel: {doubles}"
    assert "voicechat/benchmark/bench_command.py" in names  # `voicechat bench` itself stays, and says what it needs


@pytest.mark.slow
def test_the_bench_kit_wheel_carries_the_recordings_and_the_loopback_server(tmp_path: Path) -> None:
    offline = ["--no-build-isolation", "--no-index"] if importlib.util.find_spec("setuptools") else []
    src = tmp_path / "src"
    shutil.copytree(ROOT / "bench_kit", src, ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__"))
    cmd = [sys.executable, "-m", "pip", "wheel", "--no-deps", "-w", str(tmp_path / "dist"), str(src), *offline]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    (built,) = (tmp_path / "dist").glob("voicechat_bench_kit-*.whl")
    names = set(zipfile.ZipFile(built).namelist())
    assert {n.split("/")[0] for n in names} == {"voicechat_bench_kit", f"{built.name.split('-py')[0]}.dist-info"}
    assert "voicechat_bench_kit/openai_loopback_server.py" in names
    kit = ROOT / "bench_kit" / "voicechat_bench_kit"
    questions = {f"voicechat_bench_kit/questions/{p.name}" for p in (kit / "questions").glob("*.wav")}
    manifest = json.loads((kit / "paused" / "manifest.json").read_text())
    paused = {f"voicechat_bench_kit/paused/{e['file']}" for e in manifest} | {
        "voicechat_bench_kit/paused/manifest.json"
    }
    assert len(questions) >= 6 and len(paused) >= 6  # the sets docs/benchmarks.md describes
    assert questions | paused <= names


def kit_imports_of_voicechat() -> list[str]:
    """The bench kit's imports of voicechat, as ``file: module``."""
    back = []
    for path in sorted((ROOT / "bench_kit").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else []
            if isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            back += [f"{path.name}: {n}" for n in names if n == "voicechat" or n.startswith("voicechat.")]
    return back


def test_the_bench_kit_imports_nothing_from_voicechat() -> None:
    # voicechat's benchmark imports the kit; the kit importing voicechat back would make a circle
    # across the two distributions (and the kit's wheel would need voicechat to import at all).
    # Parsed in a fresh interpreter, as import_circles is: CPython 3.11.7 keeps ast.parse's
    # recursion depth in a global, so a parse racing a leftover thread's parse fails.
    assert list((ROOT / "bench_kit").rglob("*.py"))
    code = "from tests.test_packaging import kit_imports_of_voicechat as k; print('\\n'.join(k()))"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    back = [line for line in proc.stdout.splitlines() if line]
    assert not back, back


def test_voicechat_bench_without_the_kit_says_in_one_line_how_to_install_it() -> None:
    code = (
        "import sys\n"
        "sys.modules['voicechat_bench_kit'] = None  # as where the bench extra is not installed\n"
        "from voicechat.cli import main\n"
        "sys.exit(main(['bench', '--rounds', '1']))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    assert "voicechat-bench-kit" in lines[0] and "install.sh --dev" in lines[0]


def _dependencies_without_voicechat(into: Path) -> Path:
    """This environment's installed packages, minus voicechat itself, as a folder of links.

    The fresh venv sees its dependencies through one ``.pth`` line pointing here, so pip finds them
    installed and installs offline in seconds. voicechat's own (editable) install is left out: the
    only voicechat the venv can import is the one pip installs from the wheel.
    """
    into.mkdir(parents=True)
    for site_dir in site.getsitepackages():
        for entry in Path(site_dir).iterdir():
            name = entry.name.lower()
            if (
                name.startswith(("voicechat", "__editable__", "_virtualenv"))
                or name.endswith(".pth")
                or name == "__pycache__"
                or (into / entry.name).exists()
            ):
                continue
            (into / entry.name).symlink_to(entry)
    return into


@pytest.mark.slow
@pytest.mark.browser
def test_voicechat_app_runs_the_dashboard_from_a_wheel_in_a_fresh_venv(wheel: Path, tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    python = venv / "bin" / "python"
    purelib = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    # Named like a real one: Streamlit switches to its development mode (no --server.port) elsewhere.
    deps = _dependencies_without_voicechat(tmp_path / "deps" / "site-packages")
    Path(purelib, "voicechat-test-deps.pth").write_text(f"{deps}\n")
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME")}
    install = subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(python), "install", "--no-index", f"{wheel}[streamlit]"],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert install.returncode == 0, install.stdout + install.stderr
    where = subprocess.run(
        [str(python), "-c", "import voicechat.streamlit.page as p; print(p.__file__)"],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=120,
    )
    assert where.stdout.startswith(purelib), where.stdout + where.stderr  # the wheel's copy, not the checkout

    port = free_port()
    url = f"http://127.0.0.1:{port}/"
    log = tmp_path / "app.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [
                str(venv / "bin" / "voicechat"),
                "app",
                "--server.port",
                str(port),
                "--server.address",
                "127.0.0.1",
                "--server.headless",
                "true",
                "--browser.gatherUsageStats",
                "false",
            ],
            cwd=tmp_path,
            env={**env, "HF_HUB_OFFLINE": "1"},
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:

        def healthy() -> bool:
            if proc.poll() is not None:
                raise RuntimeError(f"voicechat app exited with {proc.returncode}: {log.read_text()}")
            try:
                with urllib.request.urlopen(url + "_stcore/health", timeout=2) as r:
                    return r.status == 200 and r.read() == b"ok"
            except OSError:
                return False

        wait_for(healthy, 120, what="voicechat app's /_stcore/health")
        _dashboard_renders(url)
    finally:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
    served = log.read_text().split("Stopping...")[0]  # (a model load cut short by the stop may still complain)
    # Streamlit 1.67's Starlette server logs a traceback of its own when a browser drops a websocket
    # before it was accepted (Chromium closing the page); only a traceback through voicechat is ours.
    first, *asgi = served.split("Exception in ASGI application")
    ours = first + "".join(t for t in asgi if "WebSocketDisconnected" not in t or "/voicechat/" in t)
    assert "You can now view your Streamlit app" in served and "Traceback" not in ours, served


def _dashboard_renders(url: str) -> None:
    """The page script ran from the package: headless Chromium shows the dashboard's title and start button."""
    from playwright.sync_api import sync_playwright

    from tests.conftest import require
    from tests.streamlit_harness import STREAMER_IFRAME

    require("chromium")
    with sync_playwright() as pw:
        browser = pw.chromium.launch(
            executable_path=shutil.which("chromium"),
            headless=True,
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--no-first-run",
            ],
        )
        try:
            page = browser.new_page()
            page.goto(url)
            page.get_by_text("Real-time voice chat").wait_for(timeout=120_000)
            page.frame_locator(STREAMER_IFRAME).get_by_role("button", name="Start conversation").wait_for(
                timeout=120_000
            )
        finally:
            browser.close()
