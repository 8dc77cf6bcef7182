"""An OpenAI-compatible llama.cpp server as a child process, up and answering before it is used.

The tests that put the LLM stage (or the end-of-turn score) on a real serving engine and
``bench/per_call_ab.py --score-on-server`` start the same server the same way: this is that
start, the wait until ``/models`` answers, and the stop. The caller passes the GGUF (the kit
imports nothing from voicechat). Two engines: llama-cpp-python's ``python -m llama_cpp.server``
(its ``[server]`` extra; one sequence, every prompt token's logits when ``logprobs`` is asked), or,
given ``llama_server=PATH``, llama.cpp's own ``llama-server`` binary (``scripts/build_llama_server.sh``
builds it from the llama-cpp-python source that pip installs): ``slots`` sequences, each keeping its
prompt's cache, and the probabilities of the last position only.

Threads: none; :func:`running` blocks the caller while the server loads (a few seconds).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO


class ServerDidNotStart(RuntimeError):
    """The server exited or did not answer in time; the message ends with what it printed."""


@dataclass
class LlamaCppServer:
    process: subprocess.Popen[bytes]
    port: int
    log: Path | None
    name: str = "llama_cpp.server"

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def access_log(self) -> str:
        return self.log.read_text(errors="replace") if self.log is not None else ""


def llama_server_binary() -> str | None:
    """llama.cpp's ``llama-server``: ``$LLAMA_SERVER``, else beside this interpreter (where
    ``scripts/build_llama_server.sh`` installs it), else on ``PATH``; None when none is built."""
    beside = str(Path(sys.executable).parent / "llama-server")
    for candidate in (os.environ.get("LLAMA_SERVER"), beside, shutil.which("llama-server")):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    return None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def running(
    model: str,
    *,
    n_ctx: int = 2048,
    threads: int | None = None,
    api_key: str | None = None,
    log: Path | None = None,
    timeout_s: float = 180.0,
    llama_server: str | None = None,
    slots: int = 1,
) -> Iterator[LlamaCppServer]:
    """``python -m llama_cpp.server`` (or the ``llama_server`` binary with ``slots`` sequences) on
    127.0.0.1 with ``model``; its output to ``log`` (else dropped).

    Raises :class:`ServerDidNotStart` when it exits or does not answer within ``timeout_s``. On exit
    the server is resumed (a test may have frozen it with SIGSTOP), terminated, and killed if it
    does not stop within 15 s.
    """
    port = free_port()
    if llama_server:
        cmd = _llama_server_command(llama_server, model, port, n_ctx, threads, api_key, slots)
    else:
        cmd = [sys.executable, "-m", "llama_cpp.server", "--model", model, "--host", "127.0.0.1", "--port", str(port)]
        cmd += ["--n_ctx", str(n_ctx), "--verbose", "False"]
        if threads is not None:
            cmd += ["--n_threads", str(threads)]
        if api_key is not None:
            cmd += ["--api_key", api_key]
    out: IO[bytes] | int = log.open("wb") if log is not None else subprocess.DEVNULL
    try:
        process = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT)
    finally:
        if not isinstance(out, int):
            out.close()
    server = LlamaCppServer(process, port, log, Path(llama_server).name if llama_server else "llama_cpp.server")
    try:
        _wait_until_up(server, api_key, timeout_s)
        yield server
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(process.pid, signal.SIGCONT)
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)


def _llama_server_command(
    binary: str, model: str, port: int, n_ctx: int, threads: int | None, api_key: str | None, slots: int
) -> list[str]:
    """``n_ctx`` per slot. ``--swa-full``: Gemma 3 attends to a sliding window, and without a
    full-size cache for it the server cannot reuse a slot's cached prefix (it re-reads the prompt)."""
    cmd = [binary, "--model", model, "--host", "127.0.0.1", "--port", str(port), "--parallel", str(slots)]
    cmd += ["--ctx-size", str(n_ctx * slots), "--swa-full", "--no-webui", "--log-disable"]
    if threads is not None:
        cmd += ["--threads", str(threads), "--threads-batch", str(threads)]
    if api_key is not None:
        cmd += ["--api-key", api_key]
    return cmd


def _wait_until_up(server: LlamaCppServer, api_key: str | None, timeout_s: float) -> None:
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    deadline = time.monotonic() + timeout_s
    while True:
        if server.process.poll() is not None:
            raise ServerDidNotStart(f"{server.name} exited with {server.process.returncode}:\n{server.access_log()}")
        request = urllib.request.Request(f"{server.base_url}/models", headers=headers)
        with contextlib.suppress(OSError), urllib.request.urlopen(request, timeout=2) as answer:
            if answer.status == 200:
                return
        if time.monotonic() > deadline:
            raise ServerDidNotStart(f"{server.name} did not come up in {timeout_s:.0f} s:\n{server.access_log()}")
        time.sleep(0.25)
