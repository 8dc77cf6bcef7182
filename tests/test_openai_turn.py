"""Whole turns on the OpenAI path, against a real HTTP server speaking the OpenAI wire format.

The server stands in for OpenAI's own (which cannot run here); everything on our side — the
engine, the CLI, the official SDK, HTTP, SSE parsing — is real.
"""

from __future__ import annotations

import asyncio
import io
import json
import os
import subprocess
import sys
import wave
from collections.abc import Iterator
from pathlib import Path

import pytest

from voicechat.config import Settings
from voicechat.conversation_factory import create_conversation
from voicechat.engine import Conversation
from voicechat.events import AudioOut, ErrorEvent, ReplyDone, State
from voicechat_bench_kit.openai_loopback_server import (
    CHAT,
    SPEECH,
    TRANSCRIPTIONS,
    FakeOpenAIServer,
    Reply,
    error_reply,
    serve,
    sse_chat,
)

KEY = "sk-test-SECRET-turn-0123456789"


@pytest.fixture
def server() -> Iterator[FakeOpenAIServer]:
    yield from serve(api_key=KEY)


def _env(server: FakeOpenAIServer, key: str = KEY) -> dict[str, str]:
    return {
        **os.environ,
        "OPENAI_API_KEY": key,
        "OPENAI_BASE_URL": server.base_url,
        "VOICECHAT_MAX_RETRIES": "1",
        "VOICECHAT_REQUEST_TIMEOUT_S": "5",
        "HF_HUB_OFFLINE": "1",
    }


def _cli_turn(wav: Path, out: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "voicechat", "turn", str(wav), "--out", str(out), "--json", "--fast"],
        capture_output=True,
        text=True,
        timeout=180,
        env=env,
    )


@pytest.mark.slow
def test_cli_turn_on_openai_backends_by_default_when_a_key_is_set(
    server: FakeOpenAIServer, make_speech, tmp_path: Path
) -> None:
    server.transcript = "What is the capital of Italy?"
    server.chat_deltas = ("The capital ", "of Italy is Rome.", " Anything else?")
    proc = _cli_turn(make_speech("What is the capital of Italy?", rate=48000), tmp_path / "r.wav", _env(server))
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout.strip().splitlines()[-1])
    assert data["transcript"] == "What is the capital of Italy?"
    assert data["reply"] == "The capital of Italy is Rome. Anything else?"
    assert data["reply_audio_s"] > 0.3
    # What went over the wire: a real 16 kHz WAV of the utterance, the seed's model settings.
    upload = server.requests_to(TRANSCRIPTIONS)[0]
    with wave.open(io.BytesIO(upload.files["file"][2])) as w:
        assert w.getframerate() == 16000 and w.getnchannels() == 1 and 1.0 < w.getnframes() / 16000 < 4.0
    assert upload.form["model"] == "whisper-1" and upload.form["language"] == "en"
    chat = server.requests_to(CHAT)[0].json
    assert chat["model"] == "gpt-4o-mini" and chat["max_tokens"] == 50 and chat["temperature"] == 0.3
    assert chat["messages"][0]["role"] == "system" and chat["messages"][-1]["content"] == data["transcript"]
    speech = server.requests_to(SPEECH)
    assert speech[0].json["model"] == "tts-1" and speech[0].json["voice"] == "alloy"
    # Sentence by sentence: the first is spoken while the second is still arriving.
    assert [r.json["input"] for r in speech] == ["The capital of Italy is Rome.", "Anything else?"]
    assert KEY not in proc.stdout + proc.stderr


@pytest.mark.slow
def test_cli_turn_cut_off_mid_reply_exits_nonzero_and_keeps_partial(
    server: FakeOpenAIServer, make_speech, tmp_path: Path
) -> None:
    server.transcript = "Tell me a story."
    server.plan(CHAT, Reply(writes=sse_chat(["Once upon ", "a time, there was"], done=False), then="abort"))
    proc = _cli_turn(make_speech("Tell me a story.", rate=16000), tmp_path / "r.wav", _env(server))
    assert proc.returncode != 0
    data = json.loads(proc.stdout.strip().splitlines()[-1])
    assert data["reply"] == "Once upon a time, there was" and data["cut_off"] is True
    assert "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and proc.stderr.startswith("error: ")


@pytest.mark.slow
def test_cli_turn_with_bad_key_names_the_variable(server: FakeOpenAIServer, make_speech, tmp_path: Path) -> None:
    proc = _cli_turn(make_speech("Hello?", rate=16000), tmp_path / "r.wav", _env(server, key="sk-wrong-key-123"))
    assert proc.returncode != 0 and "OPENAI_API_KEY" in proc.stderr and "Traceback" not in proc.stderr
    assert "sk-wrong-key-123" not in proc.stderr + proc.stdout
    assert len(server.requests_to(TRANSCRIPTIONS)) == 1  # a 401 is not retried


def _text_conversation(server: FakeOpenAIServer, key: str = KEY) -> Conversation:
    from voicechat.llm.openai import OpenAIChat
    from voicechat.tts.openai import OpenAITTS

    s = Settings(
        openai_api_key=key,
        openai_base_url=server.base_url,
        max_retries=1,
        request_timeout_s=5.0,
        stt="openai",
        llm="openai",
        tts="openai",
    )
    return create_conversation(s, stt=None, llm=OpenAIChat(s), tts=OpenAITTS(s), vad=_NoVad())


class _NoVad:
    """Text-only turns need no voice activity detection."""

    window = 512

    def __call__(self, window: object) -> float:
        return 0.0

    def reset(self) -> None:
        pass


def _say(conv: Conversation, text: str) -> list[object]:
    async def run() -> list[object]:
        conv.submit_text(text)
        await conv.wait_reply()
        return conv.drain()

    return asyncio.run(run())


def test_stream_cut_off_is_kept_marked_and_next_turn_works(server: FakeOpenAIServer) -> None:
    conv = _text_conversation(server)
    server.plan(CHAT, Reply(writes=sse_chat(["Paris is ", "the capital"], done=False), then="abort"))

    async def run() -> tuple[list[object], list[object]]:
        conv.submit_text("What is the capital of France?")
        await conv.wait_reply()
        first = conv.drain()
        conv.playback_done()  # no speaker here: the user heard the whole cut-off reply before asking on
        server.chat_deltas = ("Yes, it is.",)
        conv.submit_text("Are you sure?")
        await conv.wait_reply()
        return first, conv.drain()

    first, second = asyncio.run(run())
    done = next(e for e in first if isinstance(e, ReplyDone))
    assert done.cut_off and done.text == "Paris is the capital"
    assert any(isinstance(e, ErrorEvent) and e.stage == "llm" for e in first)
    entries = conv.history.entries
    assert entries[1].content == "Paris is the capital" and entries[1].cut_off
    assert entries[3].content == "Yes, it is." and not entries[3].cut_off
    sent = server.requests_to(CHAT)[-1].json["messages"]
    assert sent[2] == {"role": "assistant", "content": "Paris is the capital …"}
    assert any(isinstance(e, ReplyDone) and e.text == "Yes, it is." for e in second)


def test_speech_failing_after_text_keeps_the_text(server: FakeOpenAIServer) -> None:
    conv = _text_conversation(server)
    server.chat_deltas = ("Sure. ", "Here it is.")
    server.plan(SPEECH, error_reply(500), error_reply(500), error_reply(500), error_reply(500))
    events = _say(conv, "Say something.")
    assert any(isinstance(e, ErrorEvent) and e.stage == "tts" for e in events)
    assert not any(isinstance(e, AudioOut) for e in events)
    assert conv.history.entries[-1].content == "Sure. Here it is."
    assert conv.state == State.LISTENING


def test_bad_key_reports_once_per_turn_and_session_stays_usable(server: FakeOpenAIServer) -> None:
    conv = _text_conversation(server, key="sk-bad-bad-bad")
    for _ in range(2):
        events = _say(conv, "Hello?")
        errors = [e for e in events if isinstance(e, ErrorEvent)]
        assert len(errors) == 1 and "OPENAI_API_KEY" in errors[0].message and "sk-bad" not in errors[0].message
        assert conv.state == State.LISTENING
    assert len(server.requests_to(CHAT)) == 1  # no retry on 401, and no second call with the same key


@pytest.mark.slow
def test_rejected_key_stops_the_calls_until_the_settings_change(server: FakeOpenAIServer, make_speech) -> None:
    """One spoken question with pauses in it (each pause starts a speculative transcription) and a
    bad key: the server is asked once, every turn still says which setting to fix, and a corrected
    key (new settings, new backends) works at once."""
    from voicechat.file_turns import run_turn_from_wav
    from voicechat.llm.openai import OpenAIChat
    from voicechat.stt.openai import OpenAISTT
    from voicechat.tts.openai import OpenAITTS

    server.transcript = "What is the capital of Italy?"
    wav = make_speech("Hello. Well, let me think. What is, I wonder, the capital of Italy?", rate=48000)

    def conversation(key: str) -> Conversation:
        s = Settings(
            openai_api_key=key,
            openai_base_url=server.base_url,
            max_retries=1,
            request_timeout_s=5.0,
            stt="openai",
            llm="openai",
            tts="openai",
            partial_interval_ms=300,
        )
        return create_conversation(s, stt=OpenAISTT(s), llm=OpenAIChat(s), tts=OpenAITTS(s))

    async def run() -> tuple[list[list[str]], str]:
        conv = conversation("sk-wrong-key-123")
        errors = []
        for _ in range(2):
            result = await run_turn_from_wav(conv, wav)
            errors.append(result.errors)
        await conv.aclose()
        fixed = conversation(KEY)
        result = await run_turn_from_wav(fixed, wav)
        await fixed.aclose()
        return errors, result.transcript

    errors, transcript = asyncio.run(run())
    for turn_errors in errors:
        assert turn_errors and all("OPENAI_API_KEY" in e and "sk-wrong" not in e for e in turn_errors)
    bad = [r for r in server.requests_to(TRANSCRIPTIONS) if "sk-wrong" in r.headers["authorization"]]
    assert len(bad) == 1
    assert not [r for r in server.requests if r.path != TRANSCRIPTIONS and "sk-wrong" in r.headers["authorization"]]
    assert "capital of Italy" in transcript  # the server answers every piece of speech the same
