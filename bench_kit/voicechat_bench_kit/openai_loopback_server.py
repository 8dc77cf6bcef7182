"""A real HTTP server speaking the OpenAI wire format, for the tests and the capacity benchmark.

It runs on 127.0.0.1 in a daemon thread, so the real ``openai`` SDK (its retries, timeouts,
SSE parser and connection handling) is exercised end to end. Each endpoint has a queue of
planned :class:`Reply` objects; an empty queue gives a normal success. Every request is
recorded (headers, JSON body or multipart fields and files) for assertions.

Bodies are sent with chunked transfer encoding, one HTTP chunk per planned write, so a
test controls exactly how the bytes are split and can cut the body off mid-stream.
"""

from __future__ import annotations

import contextlib
import email.parser
import email.policy
import io
import json
import math
import socket
import threading
import wave
from collections import defaultdict, deque
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Literal

import numpy as np

STATS = "/v1/_stats"  # not OpenAI's: what a benchmark in another process reads back
CHAT = "/v1/chat/completions"
TRANSCRIPTIONS = "/v1/audio/transcriptions"
SPEECH = "/v1/audio/speech"
COMPLETIONS = "/v1/completions"  # answered only with a planned ``body`` (the end-of-turn score's shapes)
SPEECH_RATE = 24_000


@dataclass
class Reply:
    """One planned response.

    ``writes`` are raw body pieces, each sent as its own HTTP chunk with ``pause_s`` between;
    when None they are derived from ``deltas``/``text``/``pcm``. ``gate``: before write number
    ``gate_before`` the server waits (up to ``gate_timeout_s``) for the test to set it.
    ``then`` is what happens after the writes: ``finish`` the body properly, ``abort`` (close
    the socket mid-body), ``stall`` (send nothing more until the server stops) or
    ``keepalive`` (send SSE comments until the client disconnects). ``done`` is set once the
    last planned byte has been sent.
    """

    status: int = 200
    error: str = ""
    error_type: str = "invalid_request_error"
    error_code: str | None = None
    headers: dict[str, str] = field(default_factory=dict)
    delay_s: float = 0.0
    deltas: Sequence[str] | None = None
    text: str | None = None
    pcm: bytes | None = None
    writes: Sequence[bytes] | None = None
    pause_s: float = 0.0
    gate: threading.Event | None = None
    gate_before: int = 1
    gate_timeout_s: float = 5.0
    then: Literal["finish", "abort", "stall", "keepalive"] = "finish"
    body: Any = None  # sent as the JSON answer where a route has no default (COMPLETIONS)
    done: threading.Event = field(default_factory=threading.Event)


def error_reply(status: int, message: str = "", **kwargs: Any) -> Reply:
    """An OpenAI-style error response (``{"error": {"message", "type", "code"}}``)."""
    return Reply(status=status, error=message or f"planned error {status}", **kwargs)


@dataclass
class Recorded:
    """One request as the server received it."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    json: Any = None
    form: dict[str, str] = field(default_factory=dict)
    files: dict[str, tuple[str, str, bytes]] = field(default_factory=dict)  # name → (filename, type, data)


def sse(obj: Any) -> bytes:
    """One server-sent event carrying ``obj`` as JSON (or a literal string such as [DONE])."""
    data = obj if isinstance(obj, str) else json.dumps(obj, ensure_ascii=False)
    return f"data: {data}\n\n".encode()


def chat_chunk(content: str | None = None, finish_reason: str | None = None, role: bool = False) -> dict[str, Any]:
    delta: dict[str, Any] = {}
    if role:
        delta["role"] = "assistant"
    if content is not None:
        delta["content"] = content
    return {
        "id": "chatcmpl-test",
        "object": "chat.completion.chunk",
        "created": 1_700_000_000,
        "model": "test-model",
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason, "logprobs": None}],
    }


def sse_chat(deltas: Sequence[str], *, done: bool = True) -> list[bytes]:
    """The event sequence a real server sends: role, one event per delta, finish, [DONE]."""
    events = [sse(chat_chunk("", role=True))]
    events += [sse(chat_chunk(d)) for d in deltas]
    if done:
        events += [sse(chat_chunk(finish_reason="stop")), sse("[DONE]")]
    return events


def sine_pcm(seconds: float = 0.3, freq: float = 440.0, rate: int = SPEECH_RATE) -> bytes:
    """A non-silent s16le waveform, like the speech endpoint's ``pcm`` format."""
    t = np.arange(int(seconds * rate)) / rate
    return (np.sin(2 * math.pi * freq * t) * 12_000).astype("<i2").tobytes()


def split_every(data: bytes, size: int) -> list[bytes]:
    return [data[i : i + size] for i in range(0, len(data), size)]


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:  # keep pytest output clean
        pass

    def setup(self) -> None:
        super().setup()
        self.server.owner._track(self.connection, add=True)

    def finish(self) -> None:
        self.server.owner._track(self.connection, add=False)
        with contextlib.suppress(OSError):
            super().finish()

    def do_GET(self) -> None:
        if self.path == STATS:
            self._json(200, self.server.owner.stats())
            return
        self._json(404, {"error": {"message": "not found", "type": "invalid_request_error", "code": None}})

    def do_POST(self) -> None:
        owner = self.server.owner
        record = self._read_request()
        owner._record(record)
        if owner.api_key is not None and self.headers.get("Authorization") != f"Bearer {owner.api_key}":
            sent = (self.headers.get("Authorization") or "").removeprefix("Bearer ")
            body = {"message": f"Incorrect API key provided: {sent}.", "type": "invalid_request_error"}
            self._json(401, {"error": {**body, "code": "invalid_api_key"}})
            return
        reply = owner._next_reply(self.path)
        delay = reply.delay_s or owner.delays.get(self.path, 0.0)
        if delay and owner.stopping.wait(delay):
            return
        if reply.status >= 400:
            error = {"message": reply.error, "type": reply.error_type, "code": reply.error_code}
            self._json(reply.status, {"error": error}, reply.headers)
            return
        if self.path == CHAT:
            self._chat(record, reply)
        elif self.path == TRANSCRIPTIONS:
            self._json(200, {"text": reply.text if reply.text is not None else owner.transcript})
        elif self.path == SPEECH:
            pcm = reply.pcm if reply.pcm is not None else sine_pcm()
            writes = reply.writes if reply.writes is not None else split_every(pcm, 3001)
            self._stream(reply, "application/octet-stream", writes)
        elif self.path == COMPLETIONS and reply.body is not None:
            self._json(200, reply.body, reply.headers)
        else:
            self._json(404, {"error": {"message": f"no route {self.path}", "type": "invalid_request_error"}})

    def _chat(self, record: Recorded, reply: Reply) -> None:
        deltas = reply.deltas if reply.deltas is not None else self.server.owner.chat_deltas
        if not (isinstance(record.json, dict) and record.json.get("stream")):
            message = {"role": "assistant", "content": reply.text or "".join(deltas)}
            choice = {"index": 0, "message": message, "finish_reason": "stop", "logprobs": None}
            completion = {"id": "chatcmpl-test", "object": "chat.completion", "created": 1_700_000_000}
            self._json(200, {**completion, "model": "test-model", "choices": [choice]}, reply.headers)
            return
        writes = reply.writes if reply.writes is not None else sse_chat(deltas, done=reply.then == "finish")
        self._stream(reply, "text/event-stream", writes)

    def _read_request(self) -> Recorded:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            body = b""
            while size := int(self.rfile.readline().strip() or b"0", 16):
                body += self.rfile.read(size)
                self.rfile.readline()
            self.rfile.readline()
        else:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        headers = {k.lower(): v for k, v in self.headers.items()}
        record = Recorded("POST", self.path, headers, body)
        content_type = headers.get("content-type", "")
        if content_type.startswith("application/json"):
            record.json = json.loads(body)
        elif content_type.startswith("multipart/form-data"):
            raw = f"Content-Type: {content_type}\r\n\r\n".encode() + body
            message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(raw)
            for part in message.iter_parts():
                name = part.get_param("name", header="content-disposition")
                payload = part.get_payload(decode=True)
                data = payload if isinstance(payload, bytes) else b""
                filename = part.get_filename()
                if filename is not None:
                    record.files[str(name)] = (filename, part.get_content_type(), data)
                else:
                    record.form[str(name)] = data.decode()
        return record

    def _json(self, status: int, obj: Any, headers: dict[str, str] | None = None) -> None:
        data = json.dumps(obj).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)

    def _stream(self, reply: Reply, content_type: str, writes: Sequence[bytes]) -> None:
        owner = self.server.owner
        self.send_response(200)
        self.send_header("Content-Type", content_type)
        self.send_header("Transfer-Encoding", "chunked")
        for name, value in reply.headers.items():
            self.send_header(name, value)
        self.end_headers()
        try:
            for index, piece in enumerate(writes):
                if reply.gate is not None and index == reply.gate_before:
                    reply.gate.wait(reply.gate_timeout_s)
                if index and reply.pause_s and owner.stopping.wait(reply.pause_s):
                    return
                self._chunk(piece)
            reply.done.set()
            if reply.then == "finish":
                self.wfile.write(b"0\r\n\r\n")
            elif reply.then == "abort":
                self.close_connection = True
                self.connection.shutdown(socket.SHUT_RDWR)
            elif reply.then == "stall":
                self.close_connection = True
                owner.stopping.wait()
            else:  # keepalive: comments until the client hangs up (or the server stops)
                self.close_connection = True
                while not owner.stopping.wait(0.01):
                    self._chunk(b": keep-alive\n\n")
        except OSError:
            self.close_connection = True
            owner.disconnected.set()

    def _chunk(self, piece: bytes) -> None:
        if piece:
            self.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece))


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    owner: FakeOpenAIServer

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that hangs up mid-response (a cancelled reply) is normal here, not a traceback."""
        import sys

        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


class FakeOpenAIServer:
    """Start with ``with FakeOpenAIServer(api_key=...) as server``; ``server.base_url`` ends in /v1.

    ``api_key=None`` accepts any key (like Ollama). Plan responses with
    ``server.plan(CHAT, Reply(...), error_reply(429, headers={"Retry-After": "0.01"}))``.
    ``delays`` maps a path to the seconds every response on it waits before its first byte
    (a provider's compute, fixed so that a benchmark measures only the client).
    """

    def __init__(self, api_key: str | None = "sk-test-key", delays: dict[str, float] | None = None) -> None:
        self.api_key = api_key
        self.delays = dict(delays or {})
        self.transcript = "hello from the test server"
        self.chat_deltas: Sequence[str] = ("Hello", " there", "!")
        self.requests: list[Recorded] = []
        self.stopping = threading.Event()
        self.disconnected = threading.Event()
        self._plans: dict[str, deque[Reply]] = defaultdict(deque)
        self._lock = threading.Lock()
        self._connections: set[socket.socket] = set()
        self._httpd = _Server(("127.0.0.1", 0), _Handler)
        self._httpd.owner = self
        self._thread = threading.Thread(target=self._httpd.serve_forever, args=(0.05,), daemon=True)

    @property
    def base_url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host!s}:{port}/v1"

    def plan(self, path: str, *replies: Reply) -> None:
        """Queue responses for ``path``; once they are used up requests succeed normally."""
        with self._lock:
            self._plans[path].extend(replies)

    def requests_to(self, path: str) -> list[Recorded]:
        with self._lock:
            return [r for r in self.requests if r.path == path]

    def stt_audio_seconds(self) -> float:
        """Seconds of audio uploaded for transcription so far: what a provider bills."""
        return sum(wav_seconds(r.files["file"][2]) for r in self.requests_to(TRANSCRIPTIONS) if "file" in r.files)

    def stats(self) -> dict[str, Any]:
        with self._lock:
            counts = {path: sum(r.path == path for r in self.requests) for path in (TRANSCRIPTIONS, CHAT, SPEECH)}
        return {"requests": counts, "stt_audio_s": self.stt_audio_seconds()}

    def start(self) -> FakeOpenAIServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self.stopping.set()
        self._httpd.shutdown()
        self._httpd.server_close()
        with self._lock:
            connections = list(self._connections)
        for conn in connections:  # wake handler threads blocked on idle keep-alive reads
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
        self._thread.join(timeout=5)

    def __enter__(self) -> FakeOpenAIServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _record(self, record: Recorded) -> None:
        with self._lock:
            self.requests.append(record)

    def _next_reply(self, path: str) -> Reply:
        with self._lock:
            queue = self._plans[path]
            return queue.popleft() if queue else Reply()

    def _track(self, conn: socket.socket, *, add: bool) -> None:
        with self._lock:
            (self._connections.add if add else self._connections.discard)(conn)


def wav_seconds(data: bytes) -> float:
    """Duration of a WAV upload; 0 for anything that is not one."""
    try:
        with wave.open(io.BytesIO(data)) as w:
            return w.getnframes() / float(w.getframerate())
    except (wave.Error, EOFError):
        return 0.0


def serve(api_key: str | None = "sk-test-key") -> Iterator[FakeOpenAIServer]:
    """Generator body for a pytest fixture: ``yield from serve()``."""
    with FakeOpenAIServer(api_key) as server:
        yield server


def main(argv: Sequence[str] | None = None) -> None:
    """Serve from its own process, so a benchmark's CPU figures leave the provider out.

    Prints the base URL on the first line of stdout, then serves until stdin closes.
    """
    import argparse
    import sys

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--delay", nargs=2, action="append", default=[], metavar=("PATH", "SECONDS"))
    parser.add_argument("--transcript", default=None)
    args = parser.parse_args(argv)
    with FakeOpenAIServer(api_key=None, delays={p: float(s) for p, s in args.delay}) as server:
        if args.transcript is not None:
            server.transcript = args.transcript
        print(server.base_url, flush=True)
        sys.stdin.read()


if __name__ == "__main__":
    main()
