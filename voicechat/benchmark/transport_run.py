"""WebRTC transport cost: aiortc's Opus decode + encode per session, as sessions per core.

Pairs of in-process aiortc peers (as streamlit-webrtc's own tests connect them), offline
(``iceServers: []``). Each side sends 48 kHz speech and receives the other's, so each peer
decodes one Opus stream and encodes one, exactly what the server does for one call (the
browser's mic in, the reply out) plus SRTP, RTP and jitter buffering. Both peers run here,
so the process CPU is divided by two per pair.

Everything runs on one asyncio loop on the calling thread, as aiortc runs in streamlit-webrtc.
"""

from __future__ import annotations

import asyncio
import fractions
import time
from pathlib import Path
from typing import Any

import numpy as np

from voicechat.audio import iter_wav_frames
from voicechat.benchmark.process_usage import cpu_s

FRAME_SAMPLES = 960  # 20 ms at 48 kHz


def speech_48k(questions: list[Path]) -> np.ndarray:
    """The bundled questions at 48 kHz (the first one recorded at that rate is enough)."""
    for q in questions:
        frames, rate = iter_wav_frames(q)
        if rate == 48_000:
            pcm = np.concatenate(frames).reshape(-1)
            return pcm.astype(np.int16) if pcm.dtype == np.int16 else (pcm * 32767).astype(np.int16)
    t = np.arange(48_000 * 2) / 48_000
    return (np.sin(2 * np.pi * 220 * t) * 8000).astype(np.int16)


def _track(pcm: np.ndarray) -> Any:
    import av
    from aiortc import MediaStreamTrack

    class SpeechTrack(MediaStreamTrack):
        """Loops the speech in 20 ms frames, paced by the wall clock like a microphone."""

        kind = "audio"

        def __init__(self) -> None:
            super().__init__()
            self._i = 0
            self._start: float | None = None

        async def recv(self) -> av.AudioFrame:
            if self._start is None:
                self._start = time.perf_counter()
            due = self._start + self._i * FRAME_SAMPLES / 48_000
            delay = due - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            n = len(pcm) // FRAME_SAMPLES
            chunk = pcm[(self._i % n) * FRAME_SAMPLES :][:FRAME_SAMPLES]
            frame = av.AudioFrame.from_ndarray(chunk.reshape(1, -1), format="s16", layout="mono")
            frame.sample_rate = 48_000
            frame.pts = self._i * FRAME_SAMPLES
            frame.time_base = fractions.Fraction(1, 48_000)
            self._i += 1
            return frame

    return SpeechTrack()


async def _pair(
    pcm: np.ndarray, received: list[int], both_ways: bool = True
) -> tuple[Any, Any, list[asyncio.Task[None]]]:
    """Two connected peers; ``both_ways=False``: only the "browser" sends (one encode and one
    decode: one call's codec work)."""
    from aiortc import RTCConfiguration, RTCPeerConnection

    config = RTCConfiguration(iceServers=[])
    browser, server = RTCPeerConnection(config), RTCPeerConnection(config)
    tasks: list[asyncio.Task[None]] = []

    async def drain(track: Any) -> None:  # receiving is what makes aiortc decode
        while True:
            await track.recv()
            received[0] += 1

    for pc in (browser, server) if both_ways else (browser,):
        pc.addTrack(_track(pcm))
    for pc in (browser, server):
        pc.on("track", lambda track: tasks.append(asyncio.ensure_future(drain(track))))
    await browser.setLocalDescription(await browser.createOffer())
    await server.setRemoteDescription(browser.localDescription)
    await server.setLocalDescription(await server.createAnswer())
    await browser.setRemoteDescription(server.localDescription)
    return browser, server, tasks


class CarriedMedia:
    """The transport's load for ``calls`` calls: aiortc peer pairs carrying speech.

    A pair sending both ways is two calls' server side (each peer decodes one Opus stream and
    encodes one, with SRTP); an odd call is a pair sending one way (one encode, one decode).
    ``async with CarriedMedia(calls, pcm) as media``: connected and audio flowing on entry,
    closed on exit; ``media.received`` counts 20 ms frames decoded on either side. Runs on the
    calling asyncio loop (the host benchmark puts it on the loop that feeds the engines, as
    streamlit-webrtc's aiortc shares Streamlit's loop).
    """

    def __init__(self, calls: int, pcm: np.ndarray) -> None:
        self.calls, self.pcm = calls, pcm
        self._received = [0]
        self._made: list[tuple[Any, Any, list[asyncio.Task[None]]]] = []

    @property
    def received(self) -> int:
        return self._received[0]

    async def __aenter__(self) -> CarriedMedia:
        ways = [True] * (self.calls // 2) + [False] * (self.calls % 2)
        self._made = [await _pair(self.pcm, self._received, both) for both in ways]
        deadline = time.perf_counter() + 20
        while self.received < self.calls * 25 and time.perf_counter() < deadline:  # audio flowing
            await asyncio.sleep(0.1)
        if self.calls and self.received == 0:
            raise RuntimeError("the aiortc peers never exchanged audio")
        return self

    async def __aexit__(self, *exc: object) -> None:
        for browser, server, tasks in self._made:
            for t in tasks:
                t.cancel()
            await browser.close()
            await server.close()


async def _measure(pairs: int, seconds: float, pcm: np.ndarray) -> dict[str, Any]:
    async with CarriedMedia(2 * pairs, pcm) as media:
        frames0, cpu0, wall0 = media.received, cpu_s(), time.perf_counter()
        await asyncio.sleep(seconds)
        cpu, wall, frames = cpu_s() - cpu0, time.perf_counter() - wall0, media.received - frames0
    # Cores one call's server side needs: CPU per second of audio actually carried (each peer
    # decodes what it receives and the other encoded it), so a starved run is not flattered.
    per_session = cpu / max(1e-9, frames * 0.02)
    return {
        "pairs": pairs,
        "seconds": round(wall, 1),
        "frames_received_ratio": round(frames / max(1, pairs * 2 * wall / 0.02), 3),
        "cpu_per_session_pct": round(per_session * 100, 2),
        "transport_sessions_per_core": round(1 / per_session, 1) if per_session > 0 else None,
    }


def transport_cost(questions: list[Path], pairs: int = 4, seconds: float = 10.0) -> dict[str, Any]:
    """Opus decode + encode + SRTP per call on this CPU (see the module docstring)."""
    return asyncio.run(_measure(pairs, seconds, speech_48k(questions)))
