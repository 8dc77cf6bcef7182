"""llama-cpp-python's OpenAI-compatible server as a child process, up and answering before it is used.

The tests that put the LLM stage (or the end-of-turn score) on a real serving engine and
``bench/per_call_ab.py --score-on-server`` start the same server the same way: this is that
start, the wait until ``/models`` answers, and the stop. The caller passes the GGUF (the kit
imports nothing from voicechat) and needs llama-cpp-python's ``[server]`` extra installed.

Threads: none; :func:`running` blocks the caller while the server loads (a few seconds).
"""

from __future__ import annotations

import contextlib
import os
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

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def access_log(self) -> str:
        return self.log.read_text(errors="replace") if self.log is not None else ""


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
) -> Iterator[LlamaCppServer]:
    """``python -m llama_cpp.server`` on 127.0.0.1 with ``model``; its output to ``log`` (else dropped).

    Raises :class:`ServerDidNotStart` when it exits or does not answer within ``timeout_s``. On exit
    the server is resumed (a test may have frozen it with SIGSTOP), terminated, and killed if it
    does not stop within 15 s.
    """
    port = free_port()
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
    server = LlamaCppServer(process, port, log)
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


def _wait_until_up(server: LlamaCppServer, api_key: str | None, timeout_s: float) -> None:
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    deadline = time.monotonic() + timeout_s
    while True:
        if server.process.poll() is not None:
            raise ServerDidNotStart(f"llama_cpp.server exited with {server.process.returncode}:\n{server.access_log()}")
        request = urllib.request.Request(f"{server.base_url}/models", headers=headers)
        with contextlib.suppress(OSError), urllib.request.urlopen(request, timeout=2) as answer:
            if answer.status == 200:
                return
        if time.monotonic() > deadline:
            raise ServerDidNotStart(f"llama_cpp.server did not come up in {timeout_s:.0f} s:\n{server.access_log()}")
        time.sleep(0.25)
