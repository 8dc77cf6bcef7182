"""The bench says which machine and which instruction sets its figures come from."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from voicechat.benchmark.machine import cpu_isa, machine_report
from voicechat.benchmark.report import write_docs


def _result(machine: dict[str, Any], v2v: float) -> dict[str, Any]:
    return {
        "machine": machine,
        "backends": {"stt": "local", "llm": "local", "tts": "local"},
        "turns": 1,
        "questions": ["q.wav"],
        "cpu_count": 2,
        "end_of_turn_ms": 500,
        "voice_to_voice_ms": {"p50": v2v, "p95": v2v, "max": v2v},
        "stages_ms": {"stt_ms": 1.0},
        "overhead_ms": 1.0,
        "sequential_ms": {"p50": 1.0, "p95": 1.0},
        "sequential_ratio": 0.5,
        "frame_path_realtime_factor": 100.0,
        "rss_mb": 1.0,
        "rss_growth_mb": 0.0,
        "per_turn": [
            {
                "question": "q.wav",
                "transcript": "hi",
                "reply": "hello",
                "v2v_ms": v2v,
                "sequential_ms": 1.0,
                "speculative": True,
                "started_after_eos_ms": 1.0,
                "stt_ms": 1.0,
                "first_sentence_ms": 1.0,
                "tts_first_audio_ms": 1.0,
            }
        ],
    }


@pytest.mark.slow
def test_whisper_isa_cap_is_reported_as_used(monkeypatch: pytest.MonkeyPatch) -> None:
    """Capping CTranslate2 and MKL at AVX2 shows in the report: that is how an AVX2 CPU is emulated."""
    from voicechat.models import whisper_model_path

    monkeypatch.setenv("CT2_FORCE_CPU_ISA", "AVX2")
    monkeypatch.setenv("MKL_ENABLE_INSTRUCTIONS", "AVX2")
    capped = machine_report(whisper_model_path())
    assert capped["runtime_isa"]["ctranslate2"] == "AVX2"
    # CTranslate2 calls MKL on Intel CPUs only: elsewhere the truth is "not used", never a wider ISA
    assert capped["runtime_isa"]["mkl"] in ("AVX2", "not used")
    assert capped["isa_env"] == {"CT2_FORCE_CPU_ISA": "AVX2", "MKL_ENABLE_INSTRUCTIONS": "AVX2"}
    assert "AVX2" in capped["runtime_isa"]["llama.cpp"]
    assert capped["cpu_count"] == os.cpu_count() and capped["cpu_model"]
    if cpu_isa().startswith("AVX-512") and capped["runtime_isa"]["mkl"] != "not used":
        monkeypatch.delenv("MKL_ENABLE_INSTRUCTIONS")
        assert machine_report(whisper_model_path())["runtime_isa"]["mkl"].startswith("AVX-512")


def test_each_machine_keeps_its_own_figures_in_the_docs(tmp_path: Path) -> None:
    avx512 = {
        "cpu_model": "Xeon A",
        "cpu_count": 2,
        "cpu_isa": "AVX-512 + AMX",
        "isa_env": {},
        "runtime_isa": {"ctranslate2": "AVX2", "mkl": "AVX-512 + AMX", "llama.cpp": "AVX2"},
    }
    avx2 = {
        **avx512,
        "isa_env": {"MKL_ENABLE_INSTRUCTIONS": "AVX2"},
        "runtime_isa": {**avx512["runtime_isa"], "mkl": "AVX2"},
    }
    write_docs(_result(avx512, 512.5), tmp_path, "avx512")
    write_docs(_result(avx2, 777.5), tmp_path, "avx2")
    write_docs(_result(avx2, 599.5), tmp_path, "avx2")  # a re-run replaces only its own block
    page = (tmp_path / "benchmarks.md").read_text()
    assert "512.5" in page and "599.5" in page and "777.5" not in page
    assert "MKL AVX-512 + AMX" in page and "MKL AVX2" in page and "MKL_ENABLE_INSTRUCTIONS=AVX2" in page
    assert (tmp_path / "benchmarks-avx2.json").is_file() and (tmp_path / "benchmarks-avx512.json").is_file()
