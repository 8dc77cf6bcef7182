"""A WebSocket server on 127.0.0.1 that speaks the OpenAI Realtime event protocol, for the tests and
``voicechat bench --llm realtime``.

It stands in for OpenAI's realtime servers (which cannot run here): the ``openai`` SDK's realtime
client, the ``websockets`` handshake and every event voicechat sends and reads are real. It answers
each ``response.create`` with ``voice(reply_text)`` at 24 kHz PCM16 (Piper's, in voicechat's
tests) after ``first_audio_s`` (a cloud model's time to first audio), a little faster than real
time, like the API. Its conversation memory (``items``) follows ``conversation.item.*`` events as
the API's does, so a test can check what the model would remember. Planned faults (:class:`Plan`)
make the next response fail.

Threading: the server runs its own event loop in a daemon thread; the test thread reads the recorded
events (``received``, ``items``) under a lock.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import itertools
import json
import threading
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.datastructures import Headers
from websockets.http11 import Request, Response

RATE = 24_000
CHUNK_S = 0.1  # audio per delta event
VOICE_LEVEL = 300.0  # int16 RMS of a 20 ms frame that counts as voice (server_vad)
SILENCE_MS = 500  # the API's default silence_duration_ms


@dataclass
class Plan:
    """What the next ``response.create`` gets instead of a normal reply.

    ``error``: an ``error`` event and no response (a rate limit, say); ``fail``: a response that ends
    ``failed`` with a server error; ``drop``: the socket is cut after ``after_chunks`` audio deltas;
    ``expire``: the session's time limit (an error event, then a clean close).
    """

    kind: Literal["error", "fail", "drop", "expire"]
    error: dict[str, Any] = field(default_factory=dict)
    after_chunks: int = 3


RATE_LIMITED = {
    "type": "rate_limit_error",
    "code": "rate_limit_exceeded",
    "message": "Rate limit reached for gpt-realtime: limit 10 requests per minute.",
}
SERVER_ERROR = {"type": "server_error", "code": "server_error", "message": "The server had an error."}
EXPIRED = {"type": "invalid_request_error", "code": "session_expired", "message": "Session hit the 60 minute limit."}


def placeholder_voice(text: str) -> np.ndarray:
    """A non-silent 24 kHz int16 tone lasting about as long as ``text`` takes to say (60 ms a letter)."""
    t = np.arange(int(max(len(text), 5) * 0.06 * RATE)) / RATE
    return (np.sin(2 * np.pi * 220.0 * t) * 8_000).astype(np.int16)


class FakeRealtimeServer:
    """``with FakeRealtimeServer(api_key=...) as server``: ``server.base_url`` is the OpenAI base URL
    (``http://127.0.0.1:<port>/v1``); the SDK derives ``ws://…/v1/realtime?model=…`` from it."""

    def __init__(
        self,
        api_key: str | None = "sk-test-key",
        *,
        first_audio_s: float = 0.3,
        voice: Callable[[str], np.ndarray] | None = None,
    ) -> None:
        self.api_key = api_key
        # text -> int16 PCM at 24 kHz; voicechat's tests and benchmark give it Piper's voice (this kit
        # imports nothing from voicechat), else a tone as long as the text would take to say.
        self.voice = voice or placeholder_voice
        self.first_audio_s = first_audio_s
        self.transcription_s = 0.15
        self.realtime_factor = 4.0  # audio is streamed this many times faster than it plays
        self.transcript = "What is the capital of Italy?"
        # Optional real transcription of each committed utterance (24 kHz int16 in, text out; runs on
        # a worker thread): a benchmark gives it a local Whisper so the end-of-turn score reads real words.
        self.transcribe: Callable[[np.ndarray], str] | None = None
        self.reply_text = "The capital of Italy is Rome."
        self.handshakes: list[dict[str, str]] = []  # path and headers of every connection attempt
        self.received: list[dict[str, Any]] = []  # client events (appended audio replaced by its length)
        self.items: list[dict[str, Any]] = []  # the conversation as the model would remember it
        self.sessions: list[dict[str, Any]] = []
        self._plans: deque[Plan] = deque()
        self._lock = threading.Lock()
        self._ids = itertools.count(1)
        self._speech: dict[str, np.ndarray] = {}
        self._loop = asyncio.new_event_loop()
        self._server: Server | None = None
        self._started = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._connections: set[ServerConnection] = set()

    # ------------------------------------------------------------------ test API
    @property
    def base_url(self) -> str:
        assert self._server is not None
        host, port = next(iter(self._server.sockets)).getsockname()[:2]
        return f"http://{host}:{port}/v1"

    def plan(self, *plans: Plan) -> None:
        with self._lock:
            self._plans.extend(plans)

    def events(self, kind: str) -> list[dict[str, Any]]:
        with self._lock:
            return [e for e in self.received if e.get("type") == kind]

    def memory(self) -> list[dict[str, Any]]:
        with self._lock:
            return [dict(item) for item in self.items]

    def speech(self, text: str) -> np.ndarray:
        """The reply voice saying ``text``: int16 PCM at 24 kHz (made once per text)."""
        if text not in self._speech:
            self._speech[text] = self.voice(text)
        return self._speech[text]

    def start(self) -> FakeRealtimeServer:
        self.speech(self.reply_text)  # before any client waits on it
        self._thread.start()
        self._started.wait(10)
        return self

    def stop(self) -> None:
        async def shut() -> None:
            if self._server is not None:
                self._server.close()
                await self._server.wait_closed()

        with contextlib.suppress(Exception):
            asyncio.run_coroutine_threadsafe(shut(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)

    def __enter__(self) -> FakeRealtimeServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ------------------------------------------------------------------ server
    def _serve(self) -> None:
        asyncio.set_event_loop(self._loop)

        async def begin() -> None:
            self._server = await serve(
                self._handle, "127.0.0.1", 0, process_request=self._check, max_size=None, compression=None
            )
            self._started.set()

        self._loop.run_until_complete(begin())
        self._loop.run_forever()

    def _check(self, connection: ServerConnection, request: Request) -> Response | None:
        """The handshake: the path the SDK builds from the base URL, and the bearer key."""
        with self._lock:
            self.handshakes.append({"path": request.path, **{k.lower(): v for k, v in request.headers.raw_items()}})
        if not request.path.startswith("/v1/realtime"):
            return _json_response(404, {"error": {"message": f"no route {request.path}", "type": "invalid_request"}})
        if self.api_key is not None and request.headers.get("Authorization") != f"Bearer {self.api_key}":
            sent = (request.headers.get("Authorization") or "").removeprefix("Bearer ")
            body = {"message": f"Incorrect API key provided: {sent}.", "type": "invalid_request_error"}
            return _json_response(401, {"error": {**body, "code": "invalid_api_key"}})
        return None

    async def _handle(self, ws: ServerConnection) -> None:
        self._connections.add(ws)
        session = _Session(self, ws)
        await session.send({"type": "session.created", "session": {"type": "realtime"}})
        try:
            async for message in ws:
                await session.on_event(json.loads(message))
        except Exception:  # a client that vanishes is normal here
            pass
        finally:
            session.stop()
            self._connections.discard(ws)

    def _record(self, event: dict[str, Any]) -> None:
        with self._lock:
            self.received.append(event)

    def _next_plan(self) -> Plan | None:
        with self._lock:
            return self._plans.popleft() if self._plans else None

    def new_id(self, prefix: str) -> str:
        return f"{prefix}_{next(self._ids)}"


def _json_response(status: int, body: dict[str, Any]) -> Response:
    data = json.dumps(body).encode()
    headers = Headers([("Content-Type", "application/json"), ("Content-Length", str(len(data)))])
    return Response(status, {401: "Unauthorized", 404: "Not Found"}.get(status, "Error"), headers, data)


class _Session:
    """One connection's state: its input buffer, its settings, the response being spoken."""

    def __init__(self, server: FakeRealtimeServer, ws: ServerConnection) -> None:
        self.server = server
        self.ws = ws
        self.buffer = bytearray()
        self.config: dict[str, Any] = {}
        self.response: asyncio.Task[None] | None = None
        self.tasks: set[asyncio.Task[None]] = set()
        self.heard_ms = 0  # input audio so far, for the turn detection
        self.last_voice_ms = 0
        self.speaking = False

    async def send(self, event: dict[str, Any]) -> None:
        event.setdefault("event_id", self.server.new_id("event"))
        await self.ws.send(json.dumps(event))

    def stop(self) -> None:
        for task in [*self.tasks, *([self.response] if self.response else [])]:
            task.cancel()

    async def on_event(self, event: dict[str, Any]) -> None:
        kind = event.get("type")
        shown = dict(event)
        if kind == "input_audio_buffer.append":
            audio = base64.b64decode(event.get("audio", ""))
            shown["audio"] = len(audio)
            self.buffer += audio
        self.server._record(shown)
        if kind == "input_audio_buffer.append" and self._detects_turns():
            await self._detect(np.frombuffer(audio, dtype="<i2"))
        s = self.server
        if kind == "session.update":
            self.config = event.get("session", {})
            with s._lock:
                s.sessions.append(self.config)
            await self.send({"type": "session.updated", "session": self.config})
        elif kind == "input_audio_buffer.commit":
            await self._commit()
        elif kind == "input_audio_buffer.clear":
            self.buffer.clear()
            await self.send({"type": "input_audio_buffer.cleared"})
        elif kind == "conversation.item.create":
            item = dict(event.get("item", {}))
            item.setdefault("id", s.new_id("item"))
            text = " ".join(str(c.get("text", "")) for c in item.get("content", []))
            self._remember({"id": item["id"], "role": item.get("role"), "text": text, "audio_ms": 0})
            await self.send({"type": "conversation.item.added", "item": item})
        elif kind == "conversation.item.delete":
            await self._delete(str(event.get("item_id")))
        elif kind == "conversation.item.truncate":
            await self._truncate(str(event.get("item_id")), int(event.get("audio_end_ms", 0)))
        elif kind == "response.create":
            await self._create(event.get("response") or {})
        elif kind == "response.cancel":
            if self.response is not None and not self.response.done():
                self.response.cancel()
            else:
                await self._error("response_cancel_not_active", "Cancellation failed: no active response found.")

    def _detects_turns(self) -> bool:
        detection = (self.config.get("audio", {}).get("input") or {}).get("turn_detection")
        return isinstance(detection, dict) and detection.get("type") in ("server_vad", "semantic_vad")

    async def _detect(self, pcm: np.ndarray) -> None:
        """The server's turn detection, as an energy gate: speech_started on voice, and after
        ``SILENCE_MS`` of silence speech_stopped, a commit and a reply (interrupting any reply under way)."""
        frame = RATE // 50
        for start in range(0, len(pcm) - frame + 1, frame):
            level = float(np.sqrt(np.mean(pcm[start : start + frame].astype(np.float64) ** 2)))
            self.heard_ms += 20
            if level > VOICE_LEVEL:
                self.last_voice_ms = self.heard_ms
                if not self.speaking:
                    self.speaking = True
                    await self.send({"type": "input_audio_buffer.speech_started", "audio_start_ms": self.heard_ms})
                    if self.response is not None and not self.response.done():
                        self.response.cancel()  # interrupt_response, as the API does by default
            elif self.speaking and self.heard_ms - self.last_voice_ms >= SILENCE_MS:
                self.speaking = False
                await self.send({"type": "input_audio_buffer.speech_stopped", "audio_end_ms": self.last_voice_ms})
                await self._commit()
                await self._create({})

    def _remember(self, item: dict[str, Any]) -> None:
        with self.server._lock:
            self.server.items.append(item)

    async def _commit(self) -> None:
        s = self.server
        item_id = s.new_id("item")
        audio_ms = len(self.buffer) // 2 * 1000 // RATE
        pcm = np.frombuffer(bytes(self.buffer), dtype="<i2").astype(np.int16)
        self.buffer.clear()
        transcribe = bool((self.config.get("audio", {}).get("input") or {}).get("transcription"))
        self._remember({"id": item_id, "role": "user", "text": s.transcript, "audio_ms": audio_ms})
        await self.send({"type": "input_audio_buffer.committed", "item_id": item_id, "previous_item_id": None})
        await self.send({"type": "conversation.item.added", "item": {"id": item_id, "role": "user"}})
        if transcribe:
            self._spawn(self._transcribe(item_id, pcm))

    async def _transcribe(self, item_id: str, pcm: np.ndarray) -> None:
        s = self.server
        started = asyncio.get_running_loop().time()
        text = s.transcript if s.transcribe is None else await asyncio.to_thread(s.transcribe, pcm)
        await asyncio.sleep(max(0.0, s.transcription_s - (asyncio.get_running_loop().time() - started)))
        with s._lock:
            for item in s.items:
                if item["id"] == item_id:
                    item["text"] = text
        event = {"type": "conversation.item.input_audio_transcription.completed", "item_id": item_id}
        await self.send({**event, "content_index": 0, "transcript": text})

    async def _delete(self, item_id: str) -> None:
        with self.server._lock:
            found = [i for i in self.server.items if i["id"] == item_id]
            self.server.items[:] = [i for i in self.server.items if i["id"] != item_id]
        if found:
            await self.send({"type": "conversation.item.deleted", "item_id": item_id})
        else:
            await self._error("item_delete_invalid_item_id", f"Item with item_id not found: {item_id}")

    async def _truncate(self, item_id: str, audio_end_ms: int) -> None:
        with self.server._lock:
            item = next((i for i in self.server.items if i["id"] == item_id), None)
            if item is not None and audio_end_ms <= item["audio_ms"]:
                # The API keeps the audio up to audio_end_ms and drops the text transcript.
                item.update(audio_ms=audio_end_ms, text="", truncated=True)
        if item is None or item.get("audio_ms") != audio_end_ms:
            await self._error("item_truncate_invalid_item_id", f"cannot truncate {item_id} at {audio_end_ms} ms")
            return
        event = {"type": "conversation.item.truncated", "item_id": item_id, "content_index": 0}
        await self.send({**event, "audio_end_ms": audio_end_ms})

    async def _error(self, code: str, message: str, kind: str = "invalid_request_error") -> None:
        await self.send({"type": "error", "error": {"type": kind, "code": code, "message": message}})

    async def _create(self, options: dict[str, Any]) -> None:
        plan = self.server._next_plan()
        if plan is not None and plan.kind == "error":
            await self.send({"type": "error", "error": {**plan.error, "event_id": None}})
            return
        if plan is not None and plan.kind == "expire":
            await self.send({"type": "error", "error": EXPIRED})
            await self.ws.close(1000, "session expired")
            return
        if self.response is not None and not self.response.done():
            await self._error("conversation_already_has_active_response", "a response is in progress")
            return
        self.response = asyncio.create_task(self._respond(options.get("metadata"), plan))

    async def _respond(self, metadata: Any, plan: Plan | None) -> None:
        s = self.server
        rid, item_id = s.new_id("resp"), s.new_id("item")
        base = {"response_id": rid, "item_id": item_id, "output_index": 0, "content_index": 0}
        status, sent_ms = "completed", 0
        try:
            response = {"id": rid, "object": "realtime.response", "status": "in_progress", "metadata": metadata}
            await self.send({"type": "response.created", "response": {**response, "output": []}})
            await asyncio.sleep(s.first_audio_s)
            pcm = await asyncio.to_thread(s.speech, s.reply_text)
            self._remember({"id": item_id, "role": "assistant", "text": s.reply_text, "audio_ms": 0})
            item = {"id": item_id, "type": "message", "role": "assistant"}
            await self.send({"type": "response.output_item.added", "response_id": rid, "output_index": 0, "item": item})
            words = s.reply_text.split(" ")
            step = int(RATE * CHUNK_S)
            chunks = [pcm[i : i + step] for i in range(0, len(pcm), step)]
            said = 0
            for n, chunk in enumerate(chunks):
                if plan is not None and plan.kind == "drop" and n == plan.after_chunks:
                    assert self.ws.transport is not None
                    self.ws.transport.abort()  # no close frame: the network went away
                    return
                audio = base64.b64encode(chunk.astype("<i2").tobytes()).decode()
                await self.send({"type": "response.output_audio.delta", **base, "delta": audio})
                sent_ms += len(chunk) * 1000 // RATE
                self._set_audio(item_id, sent_ms)
                upto = round(len(words) * (n + 1) / len(chunks))
                if upto > said:
                    delta = (" " if said else "") + " ".join(words[said:upto])
                    await self.send({"type": "response.output_audio_transcript.delta", **base, "delta": delta})
                    said = upto
                await asyncio.sleep(CHUNK_S / s.realtime_factor)
            if plan is not None and plan.kind == "fail":
                status = "failed"
            else:
                await self.send({"type": "response.output_audio.done", **base})
                transcript = {"type": "response.output_audio_transcript.done", **base, "transcript": s.reply_text}
                await self.send(transcript)
        except asyncio.CancelledError:
            status = "cancelled"
        details = {"type": status}
        if plan is not None and plan.kind == "fail":
            details["error"] = SERVER_ERROR  # type: ignore[assignment]
        done = {"id": rid, "object": "realtime.response", "status": status, "metadata": metadata}
        with contextlib.suppress(Exception):
            await self.send({"type": "response.done", "response": {**done, "status_details": details}})

    def _set_audio(self, item_id: str, audio_ms: int) -> None:
        with self.server._lock:
            for item in self.server.items:
                if item["id"] == item_id:
                    item["audio_ms"] = audio_ms

    def _spawn(self, coro: Any) -> None:
        task = asyncio.create_task(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)


def serve_realtime(api_key: str | None = "sk-test-key", **kw: Any) -> Iterator[FakeRealtimeServer]:
    """Generator body for a pytest fixture: ``yield from serve_realtime()``."""
    with FakeRealtimeServer(api_key, **kw) as server:
        yield server
