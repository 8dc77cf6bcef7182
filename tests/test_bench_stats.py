"""The benchmark's own arithmetic, on small synthetic inputs with known answers."""

from __future__ import annotations

import math

import numpy as np
import pytest

from voicechat.benchmark.stats import median, paired_ratio, percentile, summary, true_end_of_speech


def test_end_of_speech_is_read_from_the_recording() -> None:
    rate = 16000
    rng = np.random.default_rng(0)
    speech = (np.sin(2 * np.pi * 200 * np.arange(rate) / rate) * 0.5).astype(np.float32)
    noise_floor = (rng.standard_normal(rate // 2) * 0.001).astype(np.float32)
    audio = np.concatenate([noise_floor, speech, noise_floor, noise_floor])
    assert true_end_of_speech(audio, rate) == pytest.approx(1.5, abs=0.011)
    as_int = (audio * 32767).astype(np.int16)
    assert true_end_of_speech(as_int, rate) == pytest.approx(1.5, abs=0.011)
    stereo = np.stack([as_int, as_int], axis=1)
    assert true_end_of_speech(stereo, rate) == pytest.approx(1.5, abs=0.011)


def test_a_quiet_last_word_still_counts_but_noise_does_not() -> None:
    rate = 16000
    loud = np.full(rate, 0.5, np.float32) * np.sign(np.sin(np.arange(rate)))
    quiet = loud[: rate // 4] * 0.05  # -26 dB: a soft final syllable
    audio = np.concatenate([loud, quiet, np.zeros(rate, np.float32)])
    assert true_end_of_speech(audio, rate) == pytest.approx(1.25, abs=0.011)
    assert true_end_of_speech(np.zeros(rate, np.float32), rate) == 0.0


def test_percentiles_and_summary() -> None:
    values = [100.0, 200.0, 300.0, 400.0, 1000.0]
    assert median(values) == 300.0
    assert percentile(values, 95) == pytest.approx(880.0)
    assert percentile([42.0], 95) == 42.0
    assert math.isnan(percentile([], 50))
    assert summary(values) == {"p50": 300.0, "p95": 880.0, "max": 1000.0}


def test_ratio_is_taken_turn_by_turn() -> None:
    ours = [300.0, 400.0, 2000.0]
    sequential = [1000.0, 1000.0, 2000.0]
    assert paired_ratio(ours, sequential) == pytest.approx(0.4)  # median of 0.3, 0.4, 1.0
    with pytest.raises(ValueError):
        paired_ratio([1.0], [1.0, 2.0])


def test_turn_taking_table_reports_both_modes_and_the_ratio() -> None:
    from voicechat.benchmark.report import turn_taking

    r = {
        "end_of_turn": {
            "signals": ["silence", "text (local LLM)"],
            "p50_ratio": 0.55,
            "paired_ratio": 0.56,
            "semantic": {"voice_to_voice_ms": {"p50": 330.0, "p95": 900.0}, "eot_ms_p50": 224.0},
            "silence": {"voice_to_voice_ms": {"p50": 600.0, "p95": 700.0}, "eot_ms_p50": 512.0},
        },
        "paused_speech": {
            "semantic": {"false_cutoffs": 0, "pauses_total": 19, "false_cutoff_rate": 0.0},
            "silence": {"false_cutoffs": 19, "pauses_total": 19, "false_cutoff_rate": 1.0},
        },
    }
    text = "\n".join(turn_taking(r))
    assert "| semantic | 330.0 / 900.0 | 224.0 | 0 / 19 (0.0%) |" in text
    assert "| silence | 600.0 / 700.0 | 512.0 | 19 / 19 (100.0%) |" in text
    assert "p50 ratio 0.55" in text and "silence + text (local LLM)" in text
    assert turn_taking({}) == []


def test_turn_taking_table_reports_each_kind_of_turn_and_the_resumed_releases() -> None:
    from voicechat.benchmark.latency_run import TurnSample, kind_of, per_kind
    from voicechat.benchmark.report import turn_taking

    def turn(name: str, v2v: float, eot: float) -> TurnSample:
        return TurnSample(name, "", "", v2v, 0, eot, 0, 0, 0, 0, 0, 0, 0, 0, True, kind=kind_of(name))

    assert [kind_of(n) for n in ("q1_piper_48000.wav", "s3_espeak_16000.wav", "c2_x.wav", "mine.wav")] == [
        "question",
        "statement",
        "command",
        "other",
    ]
    sem = per_kind([turn("q1_a.wav", 400, 224), turn("s1_a.wav", 900, 800), turn("s2_a.wav", 500, 256)])
    assert list(sem) == ["question", "statement"] and sem["statement"] == {
        "v2v_p50": 700.0,
        "eot_p50": 528.0,
        "turns": 2,
    }
    sil = per_kind([turn("q1_a.wav", 650, 512), turn("s1_a.wav", 640, 512), turn("s2_a.wav", 660, 512)])
    r = {
        "end_of_turn": {
            "signals": ["silence"],
            "semantic": {"voice_to_voice_ms": {}, "eot_ms_p50": 0, "per_kind": sem, "resumed": 1},
            "silence": {"voice_to_voice_ms": {}, "eot_ms_p50": 0, "per_kind": sil, "resumed": 0},
        },
        "paused_speech": {
            "semantic": {"false_cutoffs": 2, "pauses_total": 19, "false_cutoff_rate": 0.105, "resumed": 2}
        },
    }
    text = "\n".join(turn_taking(r))
    assert "| statement | 2 | 700.0 / 528.0 | 650.0 / 512.0 |" in text
    assert "| question | 1 | 400.0 / 224.0 | 650.0 / 512.0 |" in text
    assert "answered once): semantic 3, silence 0." in text
