"""``VOICECHAT_REALTIME_TURNS=server_vad``: every chunk of microphone audio to the server, whose detector
ends the turns.

Runs on the engine's loop (``hear`` is called from ``Conversation.feed_16k``). Audio is resampled to
24 kHz by the engine's own :class:`voicechat.audio.InputConverter` and sent in 100 ms appends. Until the
connection is open the audio waits here (at most ``BACKLOG_S``), so the first words are not lost. A
``response.created`` the server began on its own becomes a turn in the engine (``host.server_turn``);
the events that came before that turn listens wait in a backlog it takes over.
"""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING

import numpy as np

from voicechat.audio import SPEECH_RATE as INPUT_RATE
from voicechat.audio import InputConverter, float_to_int16
from voicechat.errors import AuthenticationFailed, VoicechatError
from voicechat.realtime import protocol
from voicechat.realtime.base import ServerTurnHost
from voicechat.realtime.protocol import RATE, Event

if TYPE_CHECKING:
    from voicechat.realtime.session import RealtimeVoice

APPEND_SAMPLES = RATE // 10  # 100 ms per append event
BACKLOG_S = 10.0  # audio kept while (re)connecting
RETRY_S = 5.0  # after a failed connection (not a refused key), wait this long before the next try
BACKLOG_EVENTS = 4000


class AudioStream:
    def __init__(self, voice: RealtimeVoice) -> None:
        self.voice = voice
        self.host: ServerTurnHost | None = None
        self._in = InputConverter(RATE)
        self._pending: list[np.ndarray] = []
        self._pending_len = 0
        self._connecting: asyncio.Task[None] | None = None
        self._retry_at = 0.0
        self._events: list[Event] = []

    def hear(self, samples: np.ndarray) -> None:
        pcm = float_to_int16(self._in.convert(samples, INPUT_RATE))
        self._pending.append(pcm)
        self._pending_len += len(pcm)
        while self._pending_len > BACKLOG_S * RATE and len(self._pending) > 1:
            self._pending_len -= len(self._pending.pop(0))
        if self.voice.live():
            if self._pending_len >= APPEND_SAMPLES:
                self._flush()
        elif (self._connecting is None or self._connecting.done()) and time.monotonic() >= self._retry_at:
            self._connecting = asyncio.get_running_loop().create_task(self._connect())

    def _flush(self) -> None:
        pcm = np.concatenate(self._pending)
        self._pending, self._pending_len = [], 0
        for start in range(0, len(pcm), APPEND_SAMPLES):
            self.voice.send(protocol.append_audio(pcm[start : start + APPEND_SAMPLES]))

    async def _connect(self) -> None:
        history = self.host.history_for_server() if self.host is not None else []
        try:
            await self.voice.connection(history)
        except VoicechatError as exc:
            self._retry_at = float("inf") if isinstance(exc, AuthenticationFailed) else time.monotonic() + RETRY_S
            if self.host is not None:
                self.host.server_error(str(exc))
            return
        self._events.clear()
        self._flush()

    def unclaimed(self, event: Event) -> None:
        """A server event no reply is listening for: a reply the server began, or what precedes it."""
        if event.get("type") == protocol.RESPONSE_CREATED and not _tagged(event):
            rid = protocol.response_id(event)
            self._events.append(event)
            if rid is not None and self.host is not None:
                self.host.server_turn(rid)
            return
        self._events.append(event)
        del self._events[:-BACKLOG_EVENTS]

    def close(self) -> None:
        if self._connecting is not None:
            self._connecting.cancel()

    def take_backlog(self) -> list[Event]:
        events, self._events = self._events, []
        return events


def _tagged(event: Event) -> bool:
    response = event.get("response")
    metadata = response.get("metadata") if isinstance(response, dict) else None
    return isinstance(metadata, dict) and "voicechat" in metadata
