"""One spoken reply from the realtime model: send the turn, play the answer, remember what was heard.

Runs on the engine's loop. The turn's 16 kHz audio goes up as PCM16 at 24 kHz and the reply's 24 kHz
PCM16 comes down to the surface's rate, both through the engine's own converters
(:class:`voicechat.audio.InputConverter` / :class:`~voicechat.audio.OutputConverter`, PyAV's
libswresample), so there is one resampler in the project, not two.

Three ways a reply ends early, each leaving the model's memory as the user knows the conversation:
``stop`` (barge-in, the stop button) cancels the response and truncates its item at the audio the user
heard; ``forget`` (a turn started ahead whose speaker went on) cancels and deletes both items; a dropped
socket keeps what had arrived, marked cut off.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

import numpy as np

from voicechat.audio import SPEECH_RATE as INPUT_RATE
from voicechat.audio import FrameChunker, InputConverter, OutputConverter, float_to_int16
from voicechat.errors import ProviderUnavailable, VoicechatError
from voicechat.events import AudioOut, ErrorEvent, ReplyDelta
from voicechat.events import Event as EngineEvent
from voicechat.llm.base import Message
from voicechat.realtime import protocol
from voicechat.realtime.faults import dropped, error_event
from voicechat.realtime.protocol import RATE, Event
from voicechat.reply import ReplyTimes

if TYPE_CHECKING:
    from voicechat.realtime.session import RealtimeVoice
    from voicechat.speculative_turn import TurnInput

APPEND_S = 0.5  # audio per append event: well under the API's 15 MiB per event
TRANSCRIPT_WAIT_S = 2.0  # after the reply, how long the user's own transcript may still take
_tags = itertools.count(1)


class RealtimeReply:
    """A :class:`voicechat.realtime.base.VoiceReply` over a :class:`RealtimeVoice` connection."""

    def __init__(self, voice: RealtimeVoice, turn: int, output_rate: int, emit: Callable[[EngineEvent], None]) -> None:
        self.voice = voice
        self.turn = turn
        self.emit = emit
        self.times = ReplyTimes()
        self.tag = f"turn-{turn}-{next(_tags)}"
        self._rate = output_rate
        self._out = OutputConverter(output_rate)
        self._chunker = FrameChunker(output_rate)
        self._inbox: asyncio.Queue[Event] = asyncio.Queue()
        self._listen = self._inbox.put_nowait  # one object: the session releases the listener it was given
        self.user_item: str | None = None
        self.reply_item: str | None = None
        self._response: str | None = None
        self._requested = False  # response.create sent
        self._finished = False  # its response.done (or the end of the socket) seen
        self._forgetting = False
        self._stopped = False
        self._heard_ms: int | None = None  # a truncation still to send once the reply's item is named
        self._heard_user = False
        self._text_item: str | None = None  # the user's typed (or carried) words, as an item of ours
        self._said = ""

    # ------------------------------------------------------------------ the turn
    async def run(self, source: TurnInput, history: Sequence[Message], heard: Callable[[str], None]) -> ReplyTimes:
        t = self.times
        if source.text is not None and source.audio is None and not source.pieces:
            self._heard_user = True
            heard(source.text)  # typed words are shown and kept even if the server cannot be reached
        try:
            await self.voice.connection(history)
        except VoicechatError as exc:
            self._fail(exc)
            return t
        try:
            if source.response_id is not None:  # the server ended the turn and began this reply itself
                t.llm_start = time.perf_counter()
                self._response, self._requested = source.response_id, True
                await self.voice.take_turn(self._listen)
            else:
                await self.voice.take_turn(self._listen)
                await self._send_turn(source, heard)
                t.llm_start = time.perf_counter()
                self.voice.send(protocol.response_create(self.tag))
                self._requested = True
                self.voice.response_opened(self.tag)
            await self._read(heard)
        except asyncio.CancelledError:
            await self._clean_up_cancelled()
            raise
        finally:
            self.voice.release(self._listen)
            if self._finished or not self._requested:
                self.voice.response_closed()
        self._flush_audio()
        return t

    async def _send_turn(self, source: TurnInput, heard: Callable[[str], None]) -> None:
        words = [await asyncio.shield(p) for p in source.pieces]  # the words of a long utterance's cut pieces
        if source.text is not None:
            words.append(source.text)
        said = " ".join(w for w in words if w).strip()
        if said:
            self._text_item = f"vc_{self.tag}_user"
            self.voice.send(protocol.text_item("user", said, self._text_item))
        if source.audio is None:
            if said and not self._heard_user:
                self._heard_user = True
                heard(said)
            return
        self._said = said  # words before the audio (a long utterance's pieces): they lead its transcript
        pcm = float_to_int16(InputConverter(RATE).convert(source.audio, INPUT_RATE))
        step = int(RATE * APPEND_S)
        for start in range(0, len(pcm), step):
            self.voice.send(protocol.append_audio(pcm[start : start + step]))
        self.voice.send(protocol.commit())

    async def _read(self, heard: Callable[[str], None]) -> None:
        timeout = self.voice.settings.request_timeout_s
        while not self._finished:
            try:
                event = await asyncio.wait_for(self._inbox.get(), timeout)
            except asyncio.TimeoutError:
                self._fail(ProviderUnavailable(f"the realtime model did not answer within {timeout:g} s", "try again"))
                self.voice.send(protocol.response_cancel())
                return
            self._handle(event, heard)
        # The user's own words may come after the reply (transcription runs beside it).
        deadline = time.perf_counter() + TRANSCRIPT_WAIT_S
        while not self._heard_user and self.user_item is not None and not self._stopped:
            left = deadline - time.perf_counter()
            if left <= 0:
                break
            try:
                self._handle(await asyncio.wait_for(self._inbox.get(), left), heard)
            except asyncio.TimeoutError:
                break

    def _handle(self, event: Event, heard: Callable[[str], None]) -> None:
        kind = event.get("type", "")
        t = self.times
        if kind == protocol.COMMITTED and self.user_item is None:
            self.user_item = str(event.get("item_id"))
        elif kind == protocol.INPUT_TRANSCRIPT and event.get("item_id") == self.user_item:
            text = " ".join(w for w in (self._said, str(event.get("transcript", "")).strip()) if w)
            if text and not self._heard_user:
                self._heard_user = True
                heard(text)
        elif kind == protocol.RESPONSE_CREATED:
            metadata = event.get("response", {}).get("metadata") or {}
            if metadata.get("voicechat") == self.tag:
                self._response = protocol.response_id(event)
        elif self._response is None or protocol.response_id(event) not in (None, self._response):
            if kind == protocol.ERROR:
                self._error(event)
            return  # an older response's late events
        elif kind in protocol.AUDIO_DELTA:
            self.reply_item = self.reply_item or event.get("item_id")
            if not self._stopped:
                self._audio(protocol.decode_audio(str(event.get("delta", ""))))
        elif kind in protocol.TRANSCRIPT_DELTA or kind in protocol.TEXT_DELTA:
            delta = str(event.get("delta", ""))
            if delta and not self._stopped:
                if t.llm_first_token is None:
                    t.llm_first_token = time.perf_counter()
                t.text += delta
                t.spoken[:] = [(0.0, t.text)]  # words spread evenly over the audio (see heard_text)
                self.emit(ReplyDelta(self.turn, delta))
        elif kind == protocol.RESPONSE_DONE:
            self._finished = True
            response = event.get("response") or {}
            details = response.get("status_details") or {}
            if response.get("status") == "failed":
                self._fail(error_event(details.get("error") or {"message": "the response failed"}, self.voice.settings))
        elif kind == protocol.ERROR:
            self._error(event)
        elif kind == "voicechat.dropped":
            self._finished = True
            self._fail(dropped(self.voice.settings, str(event.get("reason", ""))))

    def _error(self, event: Event) -> None:
        error = event.get("error") or {}
        if error.get("code") in protocol.BENIGN_ERROR_CODES:
            return
        if error.get("code") == "session_expired":
            self.voice.new_conversation()  # closed now, not when the close frame arrives: the next turn reconnects
        self._fail(error_event(error, self.voice.settings))
        if self._response is None:
            self._finished = True  # the response.create itself was refused: nothing more will come

    def _fail(self, err: VoicechatError) -> None:
        t = self.times
        t.cut_off = bool(t.text) or t.audio_s > 0
        t.errors.append(str(err))
        self.emit(ErrorEvent(str(err), "llm"))

    # ------------------------------------------------------------------ audio out
    def _audio(self, pcm24: np.ndarray) -> None:
        frames = self._chunker.push(self._out.convert(pcm24, RATE))
        if frames.size:
            self._deliver(frames)

    def _flush_audio(self) -> None:
        if self._stopped:
            return
        frames = self._chunker.push(self._out.flush())
        tail = self._chunker.flush()
        for part in (frames, tail):
            if part.size:
                self._deliver(part)

    def _deliver(self, frames: np.ndarray) -> None:
        if self.times.first_audio is None:
            self.times.first_audio = time.perf_counter()
        self.times.audio_s += len(frames) / self._rate
        self.emit(AudioOut(self.turn, frames, self._rate))

    # ------------------------------------------------------------------ ending early
    def stop(self, heard_s: float) -> None:
        """Barge-in or stop: cancel what is still coming, keep in the model's memory what was heard.

        Once per reply: a later stop (the conversation closing, a second barge-in) would truncate
        the item again at the audio that kept arriving after the first, undoing it."""
        if self._stopped:
            return
        self._stopped = True
        self._heard_ms = round(1000 * min(max(heard_s, 0.0), self.times.audio_s))
        if self._requested and not self._finished:
            self.voice.send(protocol.response_cancel())
        if self.reply_item is not None:
            self.voice.send(protocol.truncate(self.reply_item, self._heard_ms))
            self._heard_ms = None

    def forget(self) -> None:
        """The turn never happened: cancel its response and delete what it left in the conversation."""
        self._forgetting = True
        self._stopped = True
        if self._requested and not self._finished:
            self.voice.send(protocol.response_cancel())
        self._delete_known_items()

    def _delete_known_items(self) -> None:
        for attr in ("_text_item", "user_item", "reply_item"):
            item = getattr(self, attr)
            if item is not None:
                self.voice.send(protocol.delete_item(item))
                setattr(self, attr, None)

    async def _clean_up_cancelled(self) -> None:
        """Cancelled mid-reply. The server may not have named the items yet: read on briefly for their
        ids, so that nothing of a turn that never happened, or of audio nobody heard, stays in its memory."""
        if not self._requested or self._finished:
            if self._forgetting:
                self._delete_known_items()
            return
        if not self._stopped:
            self.voice.send(protocol.response_cancel())
        if not self._forgetting and (self._heard_ms is None or self.reply_item is not None):
            return
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self._drain_until_done(), 2.0)
        if self._forgetting:
            self._delete_known_items()
        elif self.reply_item is not None and self._heard_ms is not None:
            # Stopped before its first audio arrived: the model keeps none of a reply nobody heard.
            self.voice.send(protocol.truncate(self.reply_item, self._heard_ms))

    async def _drain_until_done(self) -> None:
        while not self._finished:
            self._handle(await self._inbox.get(), lambda _text: None)
