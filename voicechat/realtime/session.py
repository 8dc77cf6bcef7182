"""``VOICECHAT_LLM=realtime``: one WebSocket to the Realtime API per conversation, opened on demand.

Threading: everything here runs on the engine's event loop. A connection belongs to the loop that
opened it (the SDK's socket cannot be used from another); a turn on a new loop opens a new one.
Two tasks per connection: the writer sends queued client events in order (so the engine's
synchronous barge-in code can queue a cancel and a truncate without awaiting), the reader hands
every server event to the reply that is listening.

Failures: a key the server refuses at the handshake is remembered, like the HTTP backends' 401
latch: every later turn reports the same one-line error without connecting again. A dropped
socket ends the reply it was carrying; the next turn reconnects and replays the history as items.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from voicechat.config import Settings
from voicechat.errors import AuthenticationFailed, VoicechatError
from voicechat.events import Event as EngineEvent
from voicechat.llm.base import Message
from voicechat.openai_client import LoopLocalClient
from voicechat.realtime import protocol
from voicechat.realtime.base import ServerTurnHost
from voicechat.realtime.faults import connect_failure
from voicechat.realtime.protocol import Event
from voicechat.realtime.stream import AudioStream
from voicechat.stt.base import language_code

DROPPED = "voicechat.dropped"  # not the API's: the reader's word to the reply that the socket closed
IDLE_WAIT_S = 2.0  # how long a turn waits for the previous, cancelled response to end on the server


@dataclass
class _Link:
    """One open connection on one loop, with its writer and reader tasks."""

    conn: Any
    loop: asyncio.AbstractEventLoop
    outbox: asyncio.Queue[Event] = field(default_factory=asyncio.Queue)
    tasks: list[asyncio.Task[None]] = field(default_factory=list)
    dead: bool = False


class RealtimeVoice:
    """The speech-to-speech backend: made by ``make_llm`` when ``VOICECHAT_LLM=realtime``.

    Holds the LLM stage's server and key (``VOICECHAT_LLM_BASE_URL`` / ``OPENAI_BASE_URL``); the key
    goes only into the WebSocket handshake, from this process, never to a browser.
    """

    name = "realtime"
    stage = "llm"

    def __init__(self, settings: Settings) -> None:
        self.settings = settings.for_stage(self.stage)
        self.model = settings.realtime_model
        self.turn_detection = None if settings.realtime_turns == "local" else settings.realtime_turns
        self.server_turns = self.turn_detection is not None
        self._stream = AudioStream(self) if self.server_turns else None
        self._client = LoopLocalClient(self.settings)  # checks the package and the key now
        self._link: _Link | None = None
        self._connecting: asyncio.Task[_Link] | None = None
        self._rejected: VoicechatError | None = None
        self._listener: Callable[[Event], None] | None = None
        self._open_response: asyncio.Future[None] | None = None
        self._open_tag = ""
        self.connections = 0  # handshakes that succeeded (a reconnect adds one)
        self._closing: set[asyncio.Task[None]] = set()

    # ------------------------------------------------------------------ the engine's side
    def voice_reply(self, turn: int, output_rate: int, emit: Callable[[EngineEvent], None]) -> Any:
        from voicechat.realtime.reply import RealtimeReply

        return RealtimeReply(self, turn, output_rate, emit)

    def stream(self, messages: Sequence[Message]) -> Any:
        """Not a text model: the engine sends every turn through :meth:`voice_reply`."""
        raise VoicechatError("the realtime model answers turns by voice, not as a text stream")

    # ------------------------------------------------------------------ connection
    async def connection(self, history: Sequence[Message]) -> None:
        """An open connection on this loop; a new one gets the session settings and ``history``."""
        if self._rejected is not None:
            raise AuthenticationFailed(self._rejected.message, self._rejected.hint)
        loop = asyncio.get_running_loop()
        link = self._link
        if link is not None and not link.dead and link.loop is loop:
            return
        if self._connecting is None or self._connecting.done() or self._connecting.get_loop() is not loop:
            self._connecting = loop.create_task(self._connect(history))
        # Shielded: a speculative turn cancelled mid-handshake must not waste the connection.
        self._link = await asyncio.shield(self._connecting)

    async def _connect(self, history: Sequence[Message]) -> _Link:
        s = self.settings
        try:
            client: Any = self._client.get()
            realtime = getattr(client, "realtime", None) or client.beta.realtime
            conn = await asyncio.wait_for(realtime.connect(model=self.model).enter(), s.request_timeout_s)
        except Exception as exc:
            err = connect_failure(exc, s)
            if isinstance(err, AuthenticationFailed):
                self._rejected = err  # a refused key cannot heal: no second handshake with it
            raise err from None
        self.connections += 1
        link = _Link(conn, asyncio.get_running_loop())
        link.outbox.put_nowait(
            protocol.session_update(
                instructions=s.prompt(),
                voice=s.openai_voice,
                transcription_model=s.openai_stt_model,
                language=language_code(s.language),
                turn_detection=self.turn_detection,
            )
        )
        for item in protocol.history_items(history):
            link.outbox.put_nowait(item)
        link.tasks = [asyncio.create_task(self._write(link)), asyncio.create_task(self._read(link))]
        return link

    async def _write(self, link: _Link) -> None:
        try:
            while True:
                event = await link.outbox.get()
                await link.conn.send(event)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self._lost(link, f"{type(exc).__name__}")

    async def _read(self, link: _Link) -> None:
        reason = "closed by the server"
        try:
            while True:
                raw = await link.conn.recv_bytes()
                event = json.loads(raw)
                if not isinstance(event, dict) or link.dead:
                    continue
                if event.get("type") == protocol.RESPONSE_DONE and _tag_of(event) == self._open_tag:
                    self.response_closed()  # also when its reply was cancelled and no longer listens
                if self._listener is not None:
                    self._listener(event)
                elif self._stream is not None:
                    self._stream.unclaimed(event)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            code = getattr(getattr(exc, "rcvd", None), "code", None)
            reason = f"close code {code}" if code else type(exc).__name__
        self._lost(link, reason)

    def _lost(self, link: _Link, reason: str) -> None:
        if link.dead:
            return
        link.dead = True
        for task in link.tasks:
            if task is not asyncio.current_task():
                task.cancel()
        if self._listener is not None:
            self._listener({"type": DROPPED, "reason": reason})
        self.response_closed()

    # ------------------------------------------------------------------ one reply at a time
    def send(self, event: Event) -> bool:
        """Queue a client event on the live connection (callable from synchronous engine code)."""
        link = self._link
        if link is None or link.dead:
            return False
        link.outbox.put_nowait(event)
        return True

    async def take_turn(self, listener: Callable[[Event], None]) -> None:
        """Wait (briefly) until the server has finished any earlier response, then listen (a reply the
        server began itself first gets the events that came before it was listening)."""
        previous = self._open_response
        if previous is not None and not previous.done():
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(asyncio.shield(previous), IDLE_WAIT_S)
        self._listener = listener
        if self._stream is not None:
            for event in self._stream.take_backlog():
                listener(event)

    # ------------------------------------------------------------------ the server's turns
    def attach(self, host: ServerTurnHost) -> None:
        if self._stream is not None:
            self._stream.host = host

    def hear(self, samples: np.ndarray) -> None:
        """Microphone audio (16 kHz float) for the server's turn detection; connects on first use."""
        if self._stream is not None:
            self._stream.hear(samples)

    def live(self) -> bool:
        link = self._link
        return link is not None and not link.dead and link.loop is asyncio.get_running_loop()

    def release(self, listener: Callable[[Event], None]) -> None:
        if self._listener is listener:
            self._listener = None

    def response_opened(self, tag: str) -> None:
        self._open_response = asyncio.get_running_loop().create_future()
        self._open_tag = tag

    def response_closed(self) -> None:
        if self._open_response is not None and not self._open_response.done():
            self._open_response.set_result(None)

    def new_conversation(self) -> None:
        """The engine's ``clear()``: the server forgets too. The socket (and with it the server's
        conversation) is closed; the next turn opens a new session with an empty history."""
        link, self._link = self._link, None
        if link is None or link.dead:
            return
        link.dead = True
        for task in link.tasks:
            task.cancel()
        closing = link.loop.create_task(link.conn.close())
        self._closing.add(closing)
        closing.add_done_callback(self._closing.discard)

    async def aclose(self) -> None:
        """Close the socket (on the loop that opened it) and the HTTP client."""
        if self._stream is not None:
            self._stream.close()
        link, self._link = self._link, None
        if link is not None and link.loop is asyncio.get_running_loop():
            link.dead = True
            for task in link.tasks:
                task.cancel()
            await asyncio.gather(*link.tasks, return_exceptions=True)
            with contextlib.suppress(Exception):
                await asyncio.wait_for(link.conn.close(), 2.0)
        await self._client.aclose()


def _tag_of(event: Event) -> str:
    response = event.get("response")
    metadata = response.get("metadata") if isinstance(response, dict) else None
    return str(metadata.get("voicechat", "")) if isinstance(metadata, dict) else ""
