"""aiortc's audio encode and decode done where the packet is, on its event loop, not in another thread.

For every 20 ms audio frame aiortc crosses a thread twice. Sending, ``RTCRtpSender`` hands the
frame to the loop's default executor to encode (``run_in_executor``) and waits for the result
back (a future, a wake-up of the loop through its self-pipe). Receiving, ``RTCRtpReceiver`` puts
each reassembled frame on a ``queue.Queue`` for its decoder thread, which decodes it and sends
the PCM back with ``asyncio.run_coroutine_threadsafe`` (a coroutine, a task, another wake-up).
Encoding or decoding 20 ms of one voice with libopus takes a few hundredths of a millisecond;
the hand-offs around it cost far more, and they all need the interpreter lock. Measured with
``bench/transport_breakdown.py``-style aiortc pairs (``voicechat.benchmark.transport_run``),
the two hops were ~40 % of one call's transport CPU (docs/per-call-cost.md, "Cutting the per-call cost").

So, for audio only (video frames are too costly to code on the loop):

- :func:`next_encoded_frame` replaces ``RTCRtpSender._next_encoded_frame``: the same steps (the
  track's next frame, the RTP audio level, the encoder, or ``pack`` for a pre-encoded packet),
  with the encoder called directly;
- :class:`InlineDecoding` takes the place of the receiver's decoder queue before its decoder
  thread starts: ``put`` decodes at once and hands the frames to the track's asyncio queue. The
  decoder thread aiortc still starts waits in :meth:`InlineDecoding.get` until the receiver stops,
  then ends the track as aiortc's own worker does.

Both reach aiortc internals by their mangled names (checked against aiortc 1.16); if those are
missing, the stock path runs. :func:`install` and :func:`uninstall` swap two class attributes,
process-wide, under the caller's lock (:func:`voicechat.streamlit.speech_transport.install`).

Threads: everything here runs on aiortc's event loop, except :meth:`InlineDecoding.get`, which
blocks aiortc's idle decoder thread.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

import av

logger = logging.getLogger(__name__)
_stock: dict[str, Any] = {}


class InlineDecoding:
    """Stands in for ``RTCRtpReceiver``'s decoder queue: each encoded frame put is decoded there and then.

    Called on aiortc's loop (``put``), so frames go to the track's asyncio queue directly.
    """

    def __init__(self, track_queue: Any, decode_error: threading.Event) -> None:
        self._out = track_queue
        self._error = decode_error
        self._codec_name: str | None = None
        self._decoder: Any = None
        self._stopped = threading.Event()

    def put(self, task: Any) -> None:
        if task is None:  # the receiver stops: release the decoder thread, which ends the track
            self._stopped.set()
            return
        import aiortc.rtcrtpreceiver as receiver

        codec, encoded_frame = task
        if codec.name != self._codec_name:
            self._decoder = receiver.get_decoder(codec)
            self._codec_name = codec.name
        try:
            frames = self._decoder.decode(encoded_frame)
        except av.FFmpegError as exc:  # as aiortc's worker: keep the decoder, report, go on
            logger.warning("could not decode a %s frame: %s", codec.name, exc)
            self._error.set()
            return
        for frame in frames:
            self._out.put_nowait(frame)

    def get(self) -> None:
        """aiortc's decoder thread: nothing to do until the receiver stops."""
        self._stopped.wait()


async def next_encoded_frame(self: Any, codec: Any) -> Any:
    """``RTCRtpSender._next_encoded_frame`` with audio encoded on the loop (``self`` is the sender)."""
    import aiortc.rtcrtpsender as sender
    from aiortc import rtp

    if self.kind != "audio" or not hasattr(self, "_RTCRtpSender__encoder"):
        return await _stock["encode"](self, codec)
    data = await self.track.recv()
    if not self._enabled:
        return None
    encoder = self._RTCRtpSender__encoder
    if encoder is None:
        encoder = self._RTCRtpSender__encoder = sender.get_encoder(codec)
    if isinstance(data, av.AudioFrame):
        level = rtp.compute_audio_level_dbov(data)
        payloads, timestamp = encoder.encode(data)
    else:  # a pre-encoded packet
        level = None
        payloads, timestamp = encoder.pack(data)
    # aiortc's own annotation says int, but it passes None for packets too (no level header then)
    return sender.RTCEncodedFrame(payloads, timestamp, level) if payloads else None  # type: ignore[arg-type]


async def _receive(self: Any, parameters: Any) -> None:
    """``RTCRtpReceiver.receive``, with the decoder queue swapped for :class:`InlineDecoding` first."""
    queue_name = "_RTCRtpReceiver__decoder_queue"
    if (
        self.track is not None
        and self.track.kind == "audio"
        and getattr(self, "_RTCRtpReceiver__decoder_thread", "missing") is None  # not started yet
        and hasattr(self, queue_name)
        and not isinstance(getattr(self, queue_name), InlineDecoding)
    ):
        setattr(self, queue_name, InlineDecoding(self.track._queue, self._RTCRtpReceiver__decoder_error))
    await _stock["receive"](self, parameters)


def install() -> None:
    """Encode and decode audio on aiortc's loop from now on (idempotent; caller holds the install lock)."""
    from aiortc.rtcrtpreceiver import RTCRtpReceiver
    from aiortc.rtcrtpsender import RTCRtpSender

    if not _stock:
        _stock.update(encode=RTCRtpSender._next_encoded_frame, receive=RTCRtpReceiver.receive)
    RTCRtpSender._next_encoded_frame = next_encoded_frame  # type: ignore[method-assign]
    RTCRtpReceiver.receive = _receive  # type: ignore[method-assign]


def uninstall() -> None:
    """aiortc's own thread hand-offs again, for connections made from now on."""
    from aiortc.rtcrtpreceiver import RTCRtpReceiver
    from aiortc.rtcrtpsender import RTCRtpSender

    if _stock:
        RTCRtpSender._next_encoded_frame = _stock["encode"]  # type: ignore[method-assign]
        RTCRtpReceiver.receive = _stock["receive"]  # type: ignore[method-assign]


def installed() -> bool:
    from aiortc.rtcrtpsender import RTCRtpSender

    return RTCRtpSender._next_encoded_frame is next_encoded_frame
