"""The notebook widget keeps the OpenAI key inside the kernel and refuses oversized page audio.

Why these are kernel tests: the browser sees exactly what the kernel sends on its iopub and shell
channels (comm_open state, comm_msg updates and binary buffers, display data, stream output), so a
real ipykernel (the helpers of ``test_notebook_kernel``) runs with ``OPENAI_API_KEY`` set to a
canary unique to this run and ``OPENAI_BASE_URL`` pointing at a :class:`FakeOpenAIServer` in this
process. Whole turns go over the OpenAI wire format, so the key is really used (the server checks
it), and a 401 whose body quotes the key back is provoked on purpose. Every frame the kernel sends
is recorded raw, before deserialisation, and searched together with the kernel process's own
stdout/stderr, a DEBUG log and the exports, for the key as text, as base64 and inside decoded JSON.

The page is untrusted input too: audio messages over the per-message bound, or arriving far ahead
of real time, must be refused with a message in the widget while the next normal chunk still works.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.test_notebook_kernel import Kernel, chat_html, engine_idle, reply_audio
from voicechat_bench_kit.openai_loopback_server import CHAT, SPEECH, TRANSCRIPTIONS, FakeOpenAIServer, serve

CANARY = "sk-canary-" + uuid.uuid4().hex
QUESTION = "What is the capital of Italy?"
BUDGET = 320_000  # VOICECHAT_MAX_AUDIO_BYTES in the kernel: 10 s of 16 kHz Int16 ahead of real time
B64 = re.compile(r"^[A-Za-z0-9+/_-]{16,}={0,2}$")


# ---------------------------------------------------------------------------------------- scanning
def forms_of(secret: str) -> dict[str, bytes]:
    """Byte patterns a leak of ``secret`` would contain: plain, its random part, hex, base64 cores.

    A base64 core drops the 4 characters at each end, which depend on the neighbouring bytes; the
    three prefixes cover every alignment the secret can have inside a larger encoded blob.
    """
    raw = secret.encode()
    forms = {"plain": raw, "random part": secret.rsplit("-", 1)[-1].encode(), "hex": raw.hex().encode()}
    for shift in range(3):
        forms[f"base64+{shift}"] = base64.b64encode(b"\0" * shift + raw)[4:-4]
        forms[f"urlsafe base64+{shift}"] = base64.urlsafe_b64encode(b"\0" * shift + raw)[4:-4]
    return forms


def _strings(obj: Any) -> Iterator[str]:
    if isinstance(obj, str):
        yield obj
    elif isinstance(obj, dict):
        for k, v in obj.items():
            yield str(k)
            yield from _strings(v)
    elif isinstance(obj, list):
        for v in obj:
            yield from _strings(v)


def leaks(blob: bytes, secret: str, where: str) -> list[str]:
    """Where ``secret`` shows in ``blob``: raw bytes, then every JSON string (base64-decoded too)."""
    found = [f"{where}: {name}" for name, pattern in forms_of(secret).items() if pattern in blob]
    try:
        doc = json.loads(blob)
    except ValueError:
        return found
    random_part = secret.rsplit("-", 1)[-1]
    for text in _strings(doc):
        if random_part in text:
            found.append(f"{where}: in a JSON string")
        elif B64.match(text):
            try:
                altchars = b"-_" if set("-_") & set(text) else None
                decoded = base64.b64decode(text + "=" * (-len(text) % 4), altchars=altchars)
            except (binascii.Error, ValueError):
                continue
            found += [f"{where}: base64 JSON string ({hit})" for hit in leaks(decoded, secret, "decoded")]
    return found


class Wire:
    """Every multipart message the test's client receives from the kernel, recorded raw.

    The client's session deserialises each message; recording there keeps the frames exactly as
    they came over zmq (signature, header, parent header, metadata, content, binary buffers).
    """

    def __init__(self, kernel: Kernel) -> None:
        self.messages: list[list[bytes]] = []
        session = kernel.kc.session
        inner = session.deserialize

        def record(msg_list: list[Any], content: bool = True, copy: bool = True) -> dict[str, Any]:
            self.messages.append([bytes(frame) for frame in msg_list])
            return inner(msg_list, content=content, copy=copy)

        session.deserialize = record

    def drain_shell(self, kernel: Kernel) -> int:
        """Read every reply waiting on the shell channel (execute, comm_info, ...): they are recorded."""
        n = 0
        while True:
            try:
                kernel.kc.get_shell_msg(timeout=0.2)
            except Exception:  # queue.Empty
                return n
            n += 1

    def leaks(self, secret: str) -> list[str]:
        found = []
        for i, frames in enumerate(self.messages):
            header = json.loads(frames[1]) if len(frames) > 1 else {}
            for j, frame in enumerate(frames):
                found += leaks(frame, secret, f"message {i} ({header.get('msg_type')}) frame {j}")
        return found


# ---------------------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def server() -> Iterator[FakeOpenAIServer]:
    yield from serve(api_key=CANARY)


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("secure-kernel")


@pytest.fixture(scope="module")
def kernel(root: Path, server: FakeOpenAIServer) -> Iterator[tuple[Kernel, Wire]]:
    env = {
        "OPENAI_API_KEY": CANARY,
        "OPENAI_BASE_URL": server.base_url,
        "VOICECHAT_MAX_RETRIES": "0",
        "VOICECHAT_REQUEST_TIMEOUT_S": "20",
        "VOICECHAT_MAX_AUDIO_BYTES": str(BUDGET),
    }
    k = Kernel(root, env=env, output=root / "kernel-output.log")
    wire = Wire(k)
    try:
        yield k, wire
    finally:
        k.shutdown()


@pytest.fixture(scope="module")
def ids(kernel: tuple[Kernel, Wire], root: Path) -> dict[str, str]:
    """The widget on the default backends (OpenAI, as the key is set), shown as a cell's result."""
    k, _ = kernel
    k.execute(
        "import logging\n"
        f"logging.basicConfig(filename={str(root / 'kernel-debug.log')!r}, level=logging.DEBUG, force=True)\n"
        "from voicechat.notebook import VoiceChatWidget\n"
        "w = VoiceChatWidget()\n"
        "w.wait_ready(300)\n"
        "w\n"
    )
    markers = {"chat": "vc-chat", "lights": "vc-lights", "errors": "vc-errors"}
    found: dict[str, str] = {}
    for c in k.comm_opens():
        state = c["data"]["state"]
        if state.get("_anywidget_id") == "voicechat.notebook.browser_widget.VoiceBridge":
            found["bridge"] = c["comm_id"]
        found.update({name: c["comm_id"] for name, m in markers.items() if m in str(state.get("value", ""))})
    assert set(found) == {"bridge", *markers}, found
    k.wait_for(
        "the engine on the OpenAI backends",
        lambda: all(f"{kind} openai @" in chat_html(k, found["lights"]) for kind in ("stt", "llm", "tts")),
        timeout=60,
    )
    return found


def send_speech(k: Kernel, bridge: str, pcm: np.ndarray, pace_s: float) -> None:
    """The page's part: mic on, then one ~100 ms Int16 chunk per message, ``pace_s`` apart."""
    k.comm_send(bridge, {"method": "update", "state": {"listening": True, "mic_state": "on"}, "buffer_paths": []})
    for seq, i in enumerate(range(0, len(pcm), 1600)):
        audio_msg(k, bridge, pcm[i : i + 1600].astype("<i2").tobytes(), seq)
        time.sleep(pace_s)


def audio_msg(k: Kernel, bridge: str, data: bytes, seq: int = 0) -> None:
    k.comm_send(bridge, {"method": "custom", "content": {"type": "audio", "rate": 16000, "seq": seq}}, [data])


def speech_pcm(make_speech: Callable[..., Path], text: str) -> np.ndarray:
    from voicechat.audio import float_to_int16, read_audio

    return float_to_int16(read_audio(make_speech(text, rate=16000, trail_s=2.0), 16000))


def finished_reply_with(k: Kernel, chat_id: str, text: str) -> Callable[[], bool]:
    return lambda: text in (h := chat_html(k, chat_id)) and "vc-streaming" not in h


# ---------------------------------------------------------------------------------------- tests
def test_the_scanner_finds_the_key_in_every_form_it_looks_for() -> None:
    """The leak search itself must not be blind: each encoding it claims to cover is found."""
    raw = CANARY.encode()
    for pad in (b"", b"x", b"xy"):
        assert leaks(b"{" + base64.b64encode(pad + raw) + b"}", CANARY, "b64")
        assert leaks(json.dumps({"v": base64.b64encode(pad + raw).decode()}).encode(), CANARY, "json")
    assert leaks(b"prefix " + raw + b" suffix", CANARY, "plain")
    assert leaks(json.dumps({"m": f"key ...{CANARY[10:]}"}).encode(), CANARY, "part")
    assert not leaks(json.dumps({"m": "sk-canary-" + uuid.uuid4().hex}).encode(), CANARY, "other")


@pytest.mark.slow
def test_the_key_never_reaches_the_page_logs_or_exports(
    kernel: tuple[Kernel, Wire],
    ids: dict[str, str],
    server: FakeOpenAIServer,
    root: Path,
    make_speech: Callable[..., Path],
) -> None:
    k, wire = kernel
    bridge = ids["bridge"]
    # A spoken turn through every OpenAI endpoint, the chunks sent as the page sends them.
    server.transcript = QUESTION
    server.chat_deltas = ("The capital of Italy ", "is Rome.")
    send_speech(k, bridge, speech_pcm(make_speech, QUESTION), pace_s=0.025)
    k.wait_for("the spoken turn's reply", finished_reply_with(k, ids["chat"], "is Rome."))
    k.wait_for("reply audio sent to the page", lambda: reply_audio(k, bridge))
    used = {
        path: [r.headers.get("authorization") for r in server.requests_to(path)]
        for path in (TRANSCRIPTIONS, CHAT, SPEECH)
    }
    assert all(auth and set(auth) == {f"Bearer {CANARY}"} for auth in used.values()), "the key was not used"

    # Exports (what a user shares) hold the conversation but not the key.
    md, js = root / "conversation.md", root / "conversation.json"
    k.execute(f"w.export({str(md)!r}); w.export({str(js)!r})")
    for path in (md, js):
        text = path.read_bytes()
        assert b"Rome" in text and not leaks(text, CANARY, path.name)

    # A 401 from a server that quotes the rejected key back ("Incorrect API key provided: sk-…").
    k.wait_for("the turn to end", lambda: engine_idle(k, ids))
    server.api_key = "sk-accepted-" + uuid.uuid4().hex
    k.execute("w.ask('Are you still there?')")
    errors = k.wait_for(
        "the 401 in the widget", lambda: "OPENAI_API_KEY" in (h := chat_html(k, ids["errors"])) and h, timeout=60
    )
    assert "Incorrect API key provided" in errors, errors  # the server's quoting message reached the widget ...
    assert CANARY not in errors and not leaks(errors.encode(), CANARY, "errors")  # ... without the key
    assert server.requests_to(CHAT)[-1].headers.get("authorization") == f"Bearer {CANARY}"

    # After a 401 the backends send nothing more with that key, even once the server would take it
    # again; the error still names the setting.
    k.wait_for("listening after the failed turn", lambda: engine_idle(k, ids), timeout=60)
    server.api_key = CANARY
    sent = len(server.requests)
    k.execute("w.ask('Hello again?')")
    k.wait_for("the 401 again", lambda: chat_html(k, ids["errors"]).count("OPENAI_API_KEY") >= 2, timeout=60)
    assert len(server.requests) == sent
    # The session is usable again once its settings change (here: the key set anew, from the environment).
    server.chat_deltas = ("Yes, still here.",)
    k.execute("import os; w.configure(openai_api_key=os.environ['OPENAI_API_KEY'])")
    k.wait_for("listening on the new engine", lambda: engine_idle(k, ids), timeout=60)
    k.execute("w.ask('And now?')")
    k.wait_for("a reply after the 401", finished_reply_with(k, ids["chat"], "Yes, still here."), timeout=60)

    # Everything the kernel sent, printed or logged.
    k.drain(0.5)
    shell = wire.drain_shell(k)
    found = wire.leaks(CANARY)
    for name in ("kernel-output.log", "kernel-debug.log"):
        found += leaks((root / name).read_bytes(), CANARY, name)
    assert not found, "the API key left the kernel:\n" + "\n".join(found[:20])
    # Not blind: the capture holds the conversation, its audio buffers and the 401 message.
    blob = b"\n".join(b"\n".join(frames) for frames in wire.messages)
    assert b"is Rome." in blob and b"Incorrect API key provided" in blob and shell > 0
    assert sum(len(frames) > 5 for frames in wire.messages) >= 10  # messages with binary buffers
    assert b"POST" in (root / "kernel-debug.log").read_bytes()  # the DEBUG log saw the HTTP traffic


@pytest.mark.slow
def test_oversized_and_flooding_page_audio_is_refused_and_the_session_goes_on(
    kernel: tuple[Kernel, Wire],
    ids: dict[str, str],
    server: FakeOpenAIServer,
    root: Path,
    make_speech: Callable[..., Path],
) -> None:
    k, _ = kernel
    bridge = ids["bridge"]

    def stats() -> dict[str, int]:
        return dict(
            json.loads(
                k.execute(
                    "import json\nprint(json.dumps({'in': w.bridge.chunks_in, 'refused': w.bridge.chunks_refused}))"
                )
            )
        )

    def error_shown(text: str) -> Callable[[], bool]:
        return lambda: text in chat_html(k, ids["errors"])

    k.wait_for("no turn in progress", lambda: engine_idle(k, ids), timeout=60)
    assert k.execute("print(w.bridge.max_audio_bytes)").strip() == str(BUDGET)  # from Settings
    before = stats()
    # One message carrying 2 s of audio: over the 1 s bound of a single message.
    audio_msg(k, bridge, np.zeros(32_000, dtype="<i2").tobytes())
    k.wait_for("the refusal in the widget", error_shown("refused an audio message of 64000 bytes"), timeout=30)
    after = stats()
    assert after == {"in": before["in"], "refused": before["refused"] + 1}

    # A flood: 20 s of audio in well-formed 30 000-byte messages, sent at once (BUDGET is 10 s).
    for seq in range(20):
        audio_msg(k, bridge, np.zeros(15_000, dtype="<i2").tobytes(), seq)
    k.wait_for("the flood refused", error_shown("refused audio arriving faster than real time"), timeout=30)
    flood = k.wait_for(
        "all 20 messages handled",
        lambda: (s := stats())["in"] + s["refused"] == after["in"] + after["refused"] + 20 and s,
        timeout=30,
    )
    accepted = flood["in"] - after["in"]
    assert 0 < accepted <= BUDGET // 30_000 + 2, flood  # about the budget, plus what refilled meanwhile

    # Then a normal spoken turn, at real-time pace, is heard and answered as usual.
    time.sleep(1.0)  # the page resumes a moment later: one second of budget refills (not an assertion)
    server.transcript = "Is the session still working?"
    server.chat_deltas = ("It is working.",)
    send_speech(k, bridge, speech_pcm(make_speech, "Is the session still working?"), pace_s=0.1)
    k.wait_for("the turn after the refusals", finished_reply_with(k, ids["chat"], "It is working."), timeout=120)
    assert "Is the session still working?" in chat_html(k, ids["chat"])
    assert stats()["refused"] == flood["refused"], "a normal chunk was refused"
    assert b"Traceback" not in (root / "kernel-output.log").read_bytes()
