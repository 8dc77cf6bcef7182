"""Where one WebRTC call's transport CPU goes on the server, and what speech-tuned Opus saves.

    python bench/transport_breakdown.py [--rounds N] [--seconds S]

One call's server side, per second of audio, measured on one thread (``time.thread_time``) in
the same run, alternating A and B each round, medians of ``--rounds``:

- **decode**: the browser's mic (Opus) → PCM, as aiortc's ``OpusDecoder`` does (stereo s16);
- **encode**: the reply PCM (48 kHz mono s16, what streamlit-webrtc's PCM source gives) → Opus,
  as aiortc's ``OpusEncoder`` does (resampled to stereo, 96 kbit/s, complexity 10) and, for B,
  as :mod:`voicechat.streamlit.speech_transport` does (mono, 32 kbit/s, complexity 5, CELT low delay);
- **level**: the RTP audio-level header of every outgoing frame (aiortc's Python loop, or numpy);
- **srtp**: protecting the outgoing packets and unprotecting the incoming ones (libsrtp, AES-GCM
  as the browser negotiates it);
- **whole**: the full in-process aiortc pair of ``voicechat.benchmark.transport_run`` (RTP,
  jitter buffer, asyncio, ICE/DTLS keep-alives too), per call, with each encoder.

The rest (Python RTP and asyncio work, thread hand-offs) is the whole less the four parts. Names the CPU.
"""

from __future__ import annotations

import argparse
import asyncio
import fractions
import os
import statistics
import time
from collections.abc import Callable
from typing import Any

import av
import numpy as np

FRAME = 960  # 20 ms at 48 kHz


def _frames(pcm: np.ndarray) -> list[av.AudioFrame]:
    out = []
    for i in range(len(pcm) // FRAME):
        frame = av.AudioFrame.from_ndarray(pcm[i * FRAME : (i + 1) * FRAME].reshape(1, -1), format="s16", layout="mono")
        frame.sample_rate = 48_000
        frame.pts = i * FRAME  # as aiortc's source tracks stamp them
        frame.time_base = fractions.Fraction(1, 48_000)
        out.append(frame)
    return out


def _per_audio_s(work: Callable[[], int]) -> float:
    """CPU seconds per second of audio for ``work`` (which returns the 20 ms frames it handled)."""
    t0 = time.thread_time()
    frames = work()
    return (time.thread_time() - t0) / (frames * 0.02)


def measure_codec(
    pcm: np.ndarray, make_encoder: Callable[[], Any], make_decoder: Callable[[], Any], level: Callable[[Any], int]
) -> dict[str, float]:
    from aiortc.jitterbuffer import JitterFrame
    from pylibsrtp import Policy, Session

    frames = _frames(pcm)
    encoder = make_encoder()
    packets: list[bytes] = []

    def encode() -> int:
        for f in frames:
            packets.extend(encoder.encode(f)[0])
        return len(frames)

    decoder = make_decoder()

    def levels() -> int:
        for f in frames:
            level(f)
        return len(frames)

    def decode() -> int:
        for i, p in enumerate(packets):
            decoder.decode(JitterFrame(p, i * FRAME))
        return len(packets)

    key = os.urandom(28)
    tx = Session(Policy(key=key, ssrc_type=Policy.SSRC_ANY_OUTBOUND, srtp_profile=Policy.SRTP_PROFILE_AEAD_AES_128_GCM))
    rx = Session(Policy(key=key, ssrc_type=Policy.SSRC_ANY_INBOUND, srtp_profile=Policy.SRTP_PROFILE_AEAD_AES_128_GCM))

    def srtp() -> int:
        for i, p in enumerate(packets):
            header = bytes([0x80, 111]) + (i % 65536).to_bytes(2, "big") + (i * FRAME).to_bytes(4, "big") + b"\0\0\0\1"
            rx.unprotect(tx.protect(header + p))
        return len(packets)

    return {
        "encode": _per_audio_s(encode),
        "decode": _per_audio_s(decode),
        "srtp": _per_audio_s(srtp),
        "level": _per_audio_s(levels),
        "kbit_s": sum(len(p) for p in packets) * 8 / (len(packets) * 0.02) / 1000,
    }


def measure_whole(questions: list[Any], seconds: float, speech_tuned: bool) -> float:
    from voicechat.benchmark.transport_run import _measure, speech_48k
    from voicechat.streamlit.speech_transport import speech_transport

    with speech_transport(speech_tuned):
        out = asyncio.run(_measure(2, seconds, speech_48k(questions)))
    return float(out["cpu_per_session_pct"]) / 100


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--seconds", type=float, default=8.0, help="of the whole pair per round and variant")
    args = ap.parse_args()
    from aiortc.codecs.opus import OpusDecoder, OpusEncoder
    from aiortc.rtp import compute_audio_level_dbov

    from voicechat.benchmark.latency_run import default_questions
    from voicechat.benchmark.machine import cpu_isa, cpu_model
    from voicechat.benchmark.transport_run import speech_48k
    from voicechat.streamlit.speech_transport import MonoOpusDecoder, SpeechOpusEncoder, audio_level_dbov

    questions = default_questions()
    pcm = speech_48k(questions)
    variants = {
        "aiortc default": (OpusEncoder, OpusDecoder, compute_audio_level_dbov),
        "speech-tuned": (SpeechOpusEncoder, MonoOpusDecoder, audio_level_dbov),
    }
    rows: dict[str, dict[str, list[float]]] = {v: {} for v in variants}
    for _ in range(args.rounds):
        for name, make in variants.items():
            parts = measure_codec(pcm, *make)
            parts["whole"] = measure_whole(questions, args.seconds, name == "speech-tuned")
            for k, v in parts.items():
                rows[name].setdefault(k, []).append(v)
    print(f"CPU: {cpu_model()} ({cpu_isa()}), {args.rounds} rounds, medians; % of one core per call")
    print(f"{'':16} {'encode':>8} {'decode':>8} {'srtp':>8} {'level':>8} {'rest':>8} {'whole':>8} {'kbit/s':>8}")
    med = {n: {k: statistics.median(v) for k, v in r.items()} for n, r in rows.items()}
    for name, m in med.items():
        rest = m["whole"] - m["encode"] - m["decode"] - m["srtp"] - m["level"]
        print(
            f"{name:16} {m['encode'] * 100:8.2f} {m['decode'] * 100:8.2f} {m['srtp'] * 100:8.2f} "
            f"{m['level'] * 100:8.2f} {rest * 100:8.2f} {m['whole'] * 100:8.2f} {m['kbit_s']:8.1f}"
        )
    a, b = med["aiortc default"], med["speech-tuned"]
    print(f"speech-tuned / default: encode {b['encode'] / a['encode']:.2f}, whole {b['whole'] / a['whole']:.2f}")


if __name__ == "__main__":
    main()
