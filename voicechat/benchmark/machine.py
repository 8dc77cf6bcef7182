"""What machine a benchmark ran on: CPU model, cores, and the instruction set each runtime used.

Latency figures mean little without this: the same code is about twice as slow in Whisper on a
CPU without AVX-512/AMX. Each runtime picks its kernels on its own, so each is asked:

- CTranslate2 (Whisper) logs its "Selected ISA" at INFO level; ``CT2_FORCE_CPU_ISA`` overrides it.
  Its matrix products go to Intel MKL, which dispatches separately (``MKL_VERBOSE`` names the ISA;
  ``MKL_ENABLE_INSTRUCTIONS=AVX2`` caps it). An AVX2-only CPU is emulated only when both are set.
- llama.cpp reports the ISA it was compiled for (scripts/install.sh builds a portable AVX2 one).
- onnxruntime (Silero VAD, Piper) dispatches to the widest ISA the CPU has and has no switch to
  cap it, so its entry is the CPU's own.

The Whisper probe runs in a child process: both libraries decide once per process, and only
print what they chose when asked before loading.
"""

from __future__ import annotations

import os
import platform
import re
import subprocess
import sys
from typing import Any

ISA_ENV = ("CT2_FORCE_CPU_ISA", "MKL_ENABLE_INSTRUCTIONS")

_PROBE = """
import logging, numpy as np, ctranslate2
ctranslate2.set_log_level(logging.INFO)
m = ctranslate2.models.Whisper({path!r}, device="cpu", compute_type="int8", intra_threads=1)
m.encode(ctranslate2.StorageView.from_array(np.zeros((1, 80, 100), np.float32)))
"""


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def cpu_isa() -> str:
    """The widest vector instruction set the CPU itself offers (from /proc/cpuinfo flags)."""
    try:
        with open("/proc/cpuinfo") as f:
            flags = next((set(line.split(":", 1)[1].split()) for line in f if line.startswith("flags")), set())
    except OSError:
        flags = set()
    if "avx512f" in flags:
        return "AVX-512" + (" + AMX" if "amx_int8" in flags else "")
    if "avx2" in flags:
        return "AVX2"
    return "SSE/AVX" if flags else "unknown"


def _mkl_isa(line: str) -> str:
    if "AMX" in line or "Advanced Matrix" in line:
        return "AVX-512 + AMX"
    if "AVX-512" in line or "AVX512" in line:
        return "AVX-512"
    if "AVX2" in line or "Vector Extensions 2" in line:
        return "AVX2"
    return line.strip()[:80] or "unknown"


def whisper_isa(model_path: str) -> dict[str, str]:
    """Ask CTranslate2 and MKL, in a child process with this one's environment, what they pick."""
    env = {**os.environ, "MKL_VERBOSE": "1"}
    try:
        proc = subprocess.run(
            [sys.executable, "-c", _PROBE.format(path=model_path)],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return {"ctranslate2": f"unknown ({exc})", "mkl": "unknown"}
    out = proc.stdout + proc.stderr
    ct2 = re.search(r"Selected ISA:\s*(\S+)", out)
    mkl = next((ln for ln in out.splitlines() if ln.startswith("MKL_VERBOSE") and "Product build" in ln), "")
    return {"ctranslate2": ct2.group(1) if ct2 else "unknown", "mkl": _mkl_isa(mkl) if mkl else "not used"}


def llama_isa() -> str:
    """The instruction sets llama.cpp was compiled with, e.g. "AVX2 FMA F16C"."""
    try:
        import llama_cpp

        info = llama_cpp.llama_print_system_info().decode(errors="replace")
    except Exception:  # not installed, or an old binding without the call
        return "unknown"
    on = re.findall(r"(\w+) = 1", info)
    vector = [f for f in on if f.startswith(("AVX", "FMA", "F16C", "AMX"))]
    return " ".join(vector) or "SSE only"


def machine_report(whisper_model: str | None = None) -> dict[str, Any]:
    """CPU, cores and each runtime's ISA, for the bench JSON and docs/benchmarks.md."""
    report: dict[str, Any] = {
        "cpu_model": cpu_model(),
        "cpu_count": os.cpu_count(),
        "cpu_isa": cpu_isa(),
        "isa_env": {k: os.environ[k] for k in ISA_ENV if os.environ.get(k)},
        "runtime_isa": {"llama.cpp": llama_isa(), "onnxruntime": f"{cpu_isa()} (the CPU's own; cannot be capped)"},
    }
    if whisper_model:
        report["runtime_isa"].update(whisper_isa(whisper_model))
    return report


def describe(report: dict[str, Any]) -> str:
    """One line for a docs page: "Intel Xeon …, 2 CPUs (AVX-512 + AMX); Whisper: CTranslate2 AVX2, MKL AVX2; …"."""
    isa = report.get("runtime_isa", {})
    whisper = f"CTranslate2 {isa.get('ctranslate2', '?')} + MKL {isa.get('mkl', '?')}" if "ctranslate2" in isa else "?"
    env = ", ".join(f"{k}={v}" for k, v in report.get("isa_env", {}).items()) or "no ISA caps"
    return (
        f"{report.get('cpu_model')}, {report.get('cpu_count')} CPUs ({report.get('cpu_isa')}); "
        f"Whisper: {whisper}; llama.cpp: {isa.get('llama.cpp', '?')}; onnxruntime: {report.get('cpu_isa')} "
        f"({env})"
    )
