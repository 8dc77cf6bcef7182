"""Cheaper WebRTC audio per call: aiortc's Opus and RTP path tuned for one voice, process-wide.

Measured per call on the server (``bench/transport_breakdown.py``), aiortc spends its CPU on:
a pure-Python loop over every sample of every outgoing 20 ms frame to fill the RTP audio-level
header (``aiortc.rtp.compute_audio_level_dbov``, on the event loop, holding the interpreter
lock); an Opus encoder set up for music (stereo, 96 kbit/s, complexity 10, the hybrid
SILK/CELT "voip" mode); and decoding the browser's mono voice into stereo. For a speaking voice:

- the audio level is the same RFC 6465 figure computed with numpy (:func:`audio_level_dbov`);
- the reply is encoded mono, 32 kbit/s, complexity 5, in Opus's CELT-only "lowdelay" mode: less
  than half the encoder's CPU and bandwidth, and ~20 ms less algorithmic delay. The SDP still says
  ``opus/48000/2`` (RFC 7587: the decoder handles mono packets; browsers send mono themselves);
- once a silence on the reply track has settled, its frames are not encoded again: the same
  3-byte silence packet is sent (:class:`SpeechOpusEncoder`);
- the mic is decoded to mono, which the engine wants anyway;
- audio is encoded and decoded on aiortc's event loop, without its two thread hand-offs per
  20 ms frame (:mod:`voicechat.streamlit.inline_media`).

aiortc has no setting for any of these, so :func:`install` swaps three module attributes it
looks up at call time (the encoder and decoder factories, the level function) and two methods
(:mod:`~voicechat.streamlit.inline_media`), once per process.
``VOICECHAT_SPEECH_TRANSPORT=0`` keeps aiortc's own. Every aiortc connection in the process is
affected: in the app they are all this voice chat's.

Threads: :func:`install` runs on the script thread (under a lock); the patched functions run
where aiortc calls them (its event loop, its encoder executor and decoder threads).
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Iterator
from typing import Any

import numpy as np
from aiortc.codecs.opus import SAMPLE_RATE, SAMPLES_PER_FRAME, TIME_BASE, OpusDecoder, OpusEncoder
from av import AudioResampler, CodecContext

from voicechat.streamlit import inline_media

SPEECH_BIT_RATE = 32_000
SPEECH_COMPLEXITY = 5  # libopus 0-10; 10 is aiortc's (libopus's default)
_MAX_SAMPLE = 32767.0


def audio_level_dbov(frame: Any) -> int:
    """RFC 6465 Appendix A level of an s16 frame, as ``aiortc.rtp.compute_audio_level_dbov`` computes it."""
    samples = np.frombuffer(bytes(frame.planes[0]), dtype=np.int16).astype(np.float64)
    rms = float(np.sqrt(np.dot(samples, samples) / (frame.samples * _MAX_SAMPLE * _MAX_SAMPLE)))
    if rms <= 0:
        return -127
    return round(min(0.0, max(-127.0, 20 * float(np.log10(rms)))))


def digital_silence(frame: Any) -> bool:
    """Every sample of an s16 frame is zero: what the reply track sends while nothing is being said."""
    return not np.frombuffer(bytes(frame.planes[0]), dtype=np.int16).any()


class SpeechOpusEncoder(OpusEncoder):
    """aiortc's Opus encoder, set up for one voice: mono, 32 kbit/s, complexity 5, CELT-only low delay.

    A call's reply track is digital silence most of the time (the user speaking, the AI thinking),
    and libopus still spends ~170 µs a frame on it. Some 15 frames into a silence its output settles
    on one tiny packet, the same every frame; from the second time running that it returns the same
    bytes, that packet is sent without calling the codec, until a frame with sound arrives. RTP
    timestamps count the packets sent (960 samples each), as aiortc's do for a steady track; the
    codec's own clock would jump when it next sees a frame.
    """

    def __init__(
        self, bit_rate: int = SPEECH_BIT_RATE, complexity: int = SPEECH_COMPLEXITY, *, reuse_silence: bool = True
    ) -> None:
        super().__init__()
        self.reuse_silence = reuse_silence
        self.codec = CodecContext.create("libopus", "w")
        self.codec.bit_rate = bit_rate
        self.codec.format = "s16"
        self.codec.layout = "mono"
        self.codec.options = {"application": "lowdelay", "compression_level": str(complexity)}
        self.codec.sample_rate = SAMPLE_RATE
        self.codec.time_base = TIME_BASE
        self.resampler = AudioResampler(format="s16", layout="mono", rate=SAMPLE_RATE, frame_size=SAMPLES_PER_FRAME)
        self._last_silent: bytes | None = None  # the packet the codec gave for the last silent frame
        self.silent_packet: bytes | None = None  # the settled silence packet, once seen twice running
        self.reused_frames = 0  # answered with ``silent_packet``, without the codec
        self._clock = 0  # RTP timestamp of the next packet: 960 per packet sent

    def encode(self, frame: Any, force_keyframe: bool = False) -> tuple[list[bytes], int]:
        # Only whole 20 ms frames at the codec's rate are answered from the cache: then each frame
        # is one packet and the resampler holds nothing back.
        silent = frame.samples == SAMPLES_PER_FRAME and frame.sample_rate == SAMPLE_RATE and digital_silence(frame)
        if silent and self.silent_packet is not None:
            self.reused_frames += 1
            self._clock += SAMPLES_PER_FRAME
            return [self.silent_packet], self._clock - SAMPLES_PER_FRAME
        payloads, _ = super().encode(frame, force_keyframe)
        if not payloads:
            self._last_silent = None
            return payloads, self._clock  # (nothing to send: the resampler is holding a part frame)
        ts = self._clock
        self._clock += SAMPLES_PER_FRAME * len(payloads)
        if silent and len(payloads) == 1 and self.reuse_silence:
            if payloads[0] == self._last_silent:
                self.silent_packet = payloads[0]
            self._last_silent = payloads[0]
        else:
            self._last_silent = self.silent_packet = None
        return payloads, ts


class MonoOpusDecoder(OpusDecoder):
    """aiortc's Opus decoder, giving the mono the engine wants instead of stereo."""

    def __init__(self) -> None:
        super().__init__()
        self.codec = CodecContext.create("libopus", "r")
        self.codec.format = "s16"
        self.codec.layout = "mono"
        self.codec.sample_rate = SAMPLE_RATE


_lock = threading.Lock()
_originals: dict[str, Any] = {}


def _modules() -> tuple[Any, Any, Any]:
    import aiortc.rtcrtpreceiver as receiver
    import aiortc.rtcrtpsender as sender
    import aiortc.rtp as rtp

    return sender, receiver, rtp


def enabled_by_env() -> bool:
    return os.environ.get("VOICECHAT_SPEECH_TRANSPORT", "1") != "0"


def install(enabled: bool | None = None) -> bool:
    """Tune aiortc for speech in this process (idempotent); ``enabled=False`` restores aiortc's own.

    ``None`` follows ``VOICECHAT_SPEECH_TRANSPORT``. Returns whether the tuning is now on.
    """
    on = enabled_by_env() if enabled is None else enabled
    sender, receiver, rtp = _modules()
    with _lock:
        if not _originals:
            _originals.update(
                encoder=sender.get_encoder, decoder=receiver.get_decoder, level=rtp.compute_audio_level_dbov
            )
        if not on:
            sender.get_encoder = _originals["encoder"]
            receiver.get_decoder = _originals["decoder"]
            rtp.compute_audio_level_dbov = _originals["level"]
            inline_media.uninstall()
            return False
        stock_encoder, stock_decoder = _originals["encoder"], _originals["decoder"]

        def get_encoder(codec: Any) -> Any:
            return SpeechOpusEncoder() if codec.mimeType.lower() == "audio/opus" else stock_encoder(codec)

        def get_decoder(codec: Any) -> Any:
            return MonoOpusDecoder() if codec.mimeType.lower() == "audio/opus" else stock_decoder(codec)

        sender.get_encoder = get_encoder
        receiver.get_decoder = get_decoder
        rtp.compute_audio_level_dbov = audio_level_dbov
        inline_media.install()
        return True


def installed() -> bool:
    _, _, rtp = _modules()
    return rtp.compute_audio_level_dbov is audio_level_dbov


@contextlib.contextmanager
def speech_transport(enabled: bool) -> Iterator[None]:
    """For A/B measurements: the tuning on or off inside the block, as it was afterwards."""
    before = installed()
    install(enabled)
    try:
        yield
    finally:
        install(before)
