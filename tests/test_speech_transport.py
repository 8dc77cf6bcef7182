"""aiortc tuned for one voice (voicechat.streamlit.speech_transport): same level, audible speech, real peers.

Real speech (the bundled questions at 48 kHz), the real libopus through PyAV, and real aiortc
peers connected over 127.0.0.1. Chromium decoding the tuned stream is covered by the browser
tests (tests/test_replicas_behind_proxy.py and tests/test_streamlit_e2e.py check reply energy).
"""

from __future__ import annotations

import asyncio
import fractions

import av
import numpy as np
import pytest
from aiortc.codecs.opus import OpusDecoder, OpusEncoder
from aiortc.jitterbuffer import JitterFrame
from aiortc.rtp import compute_audio_level_dbov

from voicechat.benchmark.latency_run import default_questions
from voicechat.benchmark.transport_run import CarriedMedia, speech_48k
from voicechat.streamlit.speech_transport import (
    MonoOpusDecoder,
    SpeechOpusEncoder,
    audio_level_dbov,
    install,
    installed,
    speech_transport,
)

FRAME = 960


def _frames(pcm: np.ndarray) -> list[av.AudioFrame]:
    out = []
    for i in range(len(pcm) // FRAME):
        frame = av.AudioFrame.from_ndarray(pcm[i * FRAME : (i + 1) * FRAME].reshape(1, -1), format="s16", layout="mono")
        frame.sample_rate, frame.pts, frame.time_base = 48_000, i * FRAME, fractions.Fraction(1, 48_000)
        out.append(frame)
    return out


@pytest.fixture(scope="module")
def speech() -> np.ndarray:
    return speech_48k(default_questions())


def test_audio_level_is_aiortcs_figure(speech: np.ndarray) -> None:
    frames = _frames(speech)[:200]
    silence = _frames(np.zeros(FRAME, np.int16))[0]
    full = _frames(np.full(FRAME, 32767, np.int16))[0]
    for frame in [*frames, silence, full]:
        assert audio_level_dbov(frame) == compute_audio_level_dbov(frame)
    assert audio_level_dbov(silence) == -127 and audio_level_dbov(full) == 0


def _round_trip(encoder: OpusEncoder, frames: list[av.AudioFrame], decoder: OpusDecoder) -> tuple[np.ndarray, float]:
    """Encode, decode as a browser would; the decoded mono signal and the bitrate in kbit/s."""
    payloads = [p for f in frames for p in encoder.encode(f)[0]]
    decoded = [d for i, p in enumerate(payloads) for d in decoder.decode(JitterFrame(p, i * FRAME))]
    pcm = np.concatenate([d.to_ndarray().reshape(-1, len(d.layout.channels))[:, 0] for d in decoded])
    return pcm.astype(np.float64), sum(map(len, payloads)) * 8 / (len(payloads) * 0.02) / 1000


def _envelope(pcm: np.ndarray, n: int) -> np.ndarray:
    """Energy per 20 ms: what a listener follows (syllables, pauses), not the waveform a codec may change."""
    usable = pcm[: n * FRAME].reshape(n, FRAME)
    return np.sqrt((usable**2).mean(axis=1))


def test_speech_encoder_keeps_the_speech_at_less_than_half_the_bits(speech: np.ndarray) -> None:
    frames = _frames(speech)
    tuned, tuned_kbps = _round_trip(SpeechOpusEncoder(), frames, OpusDecoder())  # a stereo decoder, as browsers use
    stock, stock_kbps = _round_trip(OpusEncoder(), frames, OpusDecoder())
    n = min(len(tuned), len(stock), len(speech)) // FRAME - 2
    source = _envelope(speech.astype(np.float64), n)
    # The codecs delay the signal by a few ms; compare envelopes at the best lag within 3 frames.
    best = max(float(np.corrcoef(source[: n - 3], _envelope(tuned, n)[lag : n - 3 + lag])[0, 1]) for lag in range(3))
    assert best > 0.9, best  # both encoders score ~0.97-0.99 here; 0.9 leaves room for any libopus build
    assert tuned_kbps < 0.6 * stock_kbps and tuned_kbps < 50, (tuned_kbps, stock_kbps)


def test_mono_decoder_gives_mono(speech: np.ndarray) -> None:
    pcm, _ = _round_trip(SpeechOpusEncoder(), _frames(speech)[:50], MonoOpusDecoder())
    assert len(pcm) >= 45 * FRAME and np.abs(pcm).max() > 1000
    decoded = MonoOpusDecoder().decode(JitterFrame(SpeechOpusEncoder().encode(_frames(speech)[0])[0][0], 0))
    assert decoded and decoded[0].layout.name == "mono"


def test_installed_tuning_carries_audio_between_real_peers_and_comes_off(speech: np.ndarray) -> None:
    import aiortc.rtcrtpsender as sender

    async def carry() -> int:
        async with CarriedMedia(2, speech) as media:
            before = media.received
            await asyncio.sleep(1.0)
            return media.received - before

    before = installed()
    install(False)
    stock = sender.get_encoder  # aiortc's own
    try:
        with speech_transport(True):
            assert installed() and sender.get_encoder is not stock
            assert asyncio.run(carry()) > 50  # two calls' audio flowing, 50 frames a second each
        assert sender.get_encoder is stock and not installed()  # back as it was before the block
    finally:
        install(before)


def test_inline_coding_carries_the_speech_in_order_and_stops_cleanly(speech: np.ndarray) -> None:
    """Encode and decode on aiortc's loop (inline_media): the server hears the browser's speech as sent,
    every frame, and closing the call ends its track and aiortc's decoder thread (no hang on stop)."""
    import threading

    from aiortc import RTCConfiguration, RTCPeerConnection
    from aiortc.mediastreams import MediaStreamError

    from voicechat.benchmark.transport_run import _track
    from voicechat.streamlit import inline_media

    async def call() -> tuple[np.ndarray, int, bool]:
        config = RTCConfiguration(iceServers=[])
        browser, server = RTCPeerConnection(config), RTCPeerConnection(config)
        tracks: list = []
        server.on("track", tracks.append)
        browser.addTrack(_track(speech))
        await browser.setLocalDescription(await browser.createOffer())
        await server.setRemoteDescription(browser.localDescription)
        await server.setLocalDescription(await server.createAnswer())
        await browser.setRemoteDescription(server.localDescription)
        frames = [await asyncio.wait_for(tracks[0].recv(), 10) for _ in range(150)]  # 3 s of the call
        await browser.close()
        await server.close()
        try:
            await asyncio.wait_for(tracks[0].recv(), 5)
            ended = False
        except MediaStreamError:
            ended = True
        pcm = np.concatenate([f.to_ndarray().reshape(-1) for f in frames]).astype(np.float64)
        return pcm, sum(f.samples for f in frames), ended

    before = installed()
    try:
        with speech_transport(True):
            assert inline_media.installed()
            pcm, samples, ended = asyncio.run(call())
        assert not inline_media.installed()  # off again with the rest of the tuning
    finally:
        install(before)
    assert samples == 150 * FRAME and ended
    assert not [t for t in threading.enumerate() if t.name == "audio-decoder"], "aiortc's decoder thread hangs"
    # The speech, in order: the received energy envelope follows the source's (the track loops the
    # speech from its start; the codec and jitter buffer delay it by a few frames).
    m = min(len(speech), len(pcm)) // FRAME
    source, heard = _envelope(speech.astype(np.float64), m), _envelope(pcm, m)
    best = max(float(np.corrcoef(source[: m - 10], heard[lag : lag + m - 10])[0, 1]) for lag in range(10))
    assert best > 0.9, best


def test_settled_silence_is_sent_without_encoding_and_the_speech_after_it_is_intact(speech: np.ndarray) -> None:
    # A reply, two seconds of the silent reply track, and the reply again: what a call's output carries.
    n = len(speech) // FRAME
    said = speech[: n * FRAME]
    frames = _frames(np.concatenate([said, np.zeros(100 * FRAME, np.int16), said]))
    reusing, plain = SpeechOpusEncoder(), SpeechOpusEncoder(reuse_silence=False)
    out = [reusing.encode(f) for f in frames]
    ref = [plain.encode(f) for f in frames]
    # Most of the silence never reached the codec, and the browser got the packets it would have got.
    assert reusing.reused_frames >= 70 and plain.reused_frames == 0, reusing.reused_frames
    assert [p for p, _ in out[: n + 100]] == [p for p, _ in ref[: n + 100]]
    assert [ts for _, ts in out] == [ts for _, ts in ref] == [i * FRAME for i in range(len(frames))]
    # The reply after the silence sounds as it would have: the same energy envelope, decoded as a browser does.
    decoded = []
    for packets in (out, ref):
        decoder = OpusDecoder()
        pcm = [
            d.to_ndarray()[0, ::2]
            for i, (p, _) in enumerate(packets)
            for d in decoder.decode(JitterFrame(p[0], i * FRAME))
        ]
        decoded.append(_envelope(np.concatenate(pcm)[(n + 100) * FRAME :].astype(np.float64), n - 2))
    assert float(np.corrcoef(*decoded)[0, 1]) > 0.99 and decoded[1].max() > 1000
