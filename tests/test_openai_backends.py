"""The OpenAI backends against a real local HTTP server speaking the OpenAI wire format.

Nothing is mocked below the socket: the installed ``openai`` SDK does its own retries,
timeouts and SSE parsing, and these tests check what a user would see.
"""

from __future__ import annotations

import asyncio
import io
import sys
import threading
import time
import wave
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

from voicechat.config import Settings
from voicechat.errors import (
    AudioTooLarge,
    AuthenticationFailed,
    BackendUnavailable,
    ConfigError,
    ProviderError,
    ProviderUnavailable,
    RateLimited,
    StreamInterrupted,
    VoicechatError,
)
from voicechat.llm.base import Message
from voicechat.llm.openai import OpenAIChat
from voicechat.openai_client import PLACEHOLDER_API_KEY, translate_error
from voicechat.stt.openai import OpenAISTT
from voicechat.tts.openai import OpenAITTS
from voicechat_bench_kit.openai_loopback_server import (
    CHAT,
    SPEECH,
    TRANSCRIPTIONS,
    FakeOpenAIServer,
    Reply,
    chat_chunk,
    error_reply,
    serve,
    sine_pcm,
    split_every,
    sse,
    sse_chat,
)

KEY = "sk-test-SECRET-0123456789abcdef"
FAST_RETRY = {"Retry-After": "0.01"}  # the SDK honours Retry-After, so retries take ~10 ms


@pytest.fixture
def server() -> Iterator[FakeOpenAIServer]:
    yield from serve(api_key=KEY)


def settings_for(server: FakeOpenAIServer, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "openai_api_key": KEY,
        "openai_base_url": server.base_url,
        "request_timeout_s": 2.0,
        "max_retries": 2,
    }
    values.update(overrides)
    return Settings(**values)


MESSAGES = [Message("system", "Be brief."), Message("user", "Hi!")]


async def collect(chat: OpenAIChat, messages: list[Message] = MESSAGES) -> list[str]:
    try:
        return [delta async for delta in chat.stream(messages)]
    finally:
        await chat.aclose()


async def speak(tts: OpenAITTS, text: str = "Hello there.") -> list[np.ndarray]:
    try:
        return [chunk async for chunk in tts.synthesize(text)]
    finally:
        await tts.aclose()


async def transcribe(stt: OpenAISTT, audio: np.ndarray, language: str | None = None) -> str:
    try:
        return await stt.transcribe(audio, language=language)
    finally:
        await stt.aclose()


def expect_error(kind: type[BaseException], coro: Any) -> Any:
    with pytest.raises(kind) as info:
        asyncio.run(coro)
    return info.value


# --- speech to text ---------------------------------------------------------------------------


def test_transcription_uploads_16k_wav_with_language_hint(server: FakeOpenAIServer) -> None:
    server.transcript = "  what's the weather like  "
    audio = (0.5 * np.sin(2 * np.pi * 220 * np.arange(16_000) / 16_000)).astype(np.float32)

    text = asyncio.run(transcribe(OpenAISTT(settings_for(server)), audio, "ko-KR"))

    assert text == "what's the weather like"
    (request,) = server.requests_to(TRANSCRIPTIONS)
    assert request.headers["authorization"] == f"Bearer {KEY}"
    assert request.form["model"] == "whisper-1"
    assert request.form["language"] == "ko"
    filename, content_type, data = request.files["file"]
    assert (filename, content_type) == ("speech.wav", "audio/wav")
    with wave.open(io.BytesIO(data)) as wav:
        assert (wav.getframerate(), wav.getnchannels(), wav.getsampwidth()) == (16_000, 1, 2)
        assert wav.getnframes() == audio.size
        sent = np.frombuffer(wav.readframes(wav.getnframes()), dtype="<i2") / 32767.0
    assert np.allclose(sent, audio, atol=1e-3)


def test_transcription_without_language_lets_server_detect(server: FakeOpenAIServer) -> None:
    audio = np.zeros(8_000, dtype=np.float32)
    asyncio.run(transcribe(OpenAISTT(settings_for(server)), audio))
    (request,) = server.requests_to(TRANSCRIPTIONS)
    assert "language" not in request.form


def test_transcription_refuses_audio_over_25_mb_without_uploading(server: FakeOpenAIServer) -> None:
    audio = np.zeros(14 * 60 * 16_000, dtype=np.float32)  # 14 minutes → ~27 MB as WAV
    err = expect_error(AudioTooLarge, transcribe(OpenAISTT(settings_for(server)), audio))
    assert "25 MB" in str(err)
    assert server.requests == []


def test_transcription_of_a_blip_returns_empty_without_a_request(server: FakeOpenAIServer) -> None:
    text = asyncio.run(transcribe(OpenAISTT(settings_for(server)), np.zeros(100, dtype=np.float32)))
    assert text == ""
    assert server.requests == []


def test_transcription_server_error_is_translated(server: FakeOpenAIServer) -> None:
    server.plan(TRANSCRIPTIONS, *[error_reply(503, headers=FAST_RETRY)] * 5)
    stt = OpenAISTT(settings_for(server, max_retries=1))
    err = expect_error(ProviderUnavailable, transcribe(stt, np.zeros(16_000, dtype=np.float32)))
    assert "503" in str(err)
    assert len(server.requests_to(TRANSCRIPTIONS)) == 2


# --- chat -------------------------------------------------------------------------------------


def test_chat_streams_deltas_in_order_and_sends_settings(server: FakeOpenAIServer) -> None:
    server.plan(CHAT, Reply(deltas=["The", " sky", " is", " blue", "."]))
    settings = settings_for(server, openai_llm_model="gpt-test", max_tokens=42, temperature=0.7)

    deltas = asyncio.run(collect(OpenAIChat(settings)))

    assert deltas == ["The", " sky", " is", " blue", "."]
    (request,) = server.requests_to(CHAT)
    body = request.json
    assert body["model"] == "gpt-test"
    assert body["max_tokens"] == 42
    assert body["temperature"] == pytest.approx(0.7)
    assert body["stream"] is True
    assert body["messages"] == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Hi!"},
    ]


def test_chat_parses_sse_events_split_across_writes_mid_line(server: FakeOpenAIServer) -> None:
    deltas = ["Caf", "é ☕", " au", " lait"]
    body = b"".join(sse_chat(deltas))
    server.plan(CHAT, Reply(writes=split_every(body, 7), pause_s=0.002))

    assert asyncio.run(collect(OpenAIChat(settings_for(server)))) == deltas


def test_chat_works_keyless_against_custom_base_url() -> None:
    with FakeOpenAIServer(api_key=None) as server:
        settings = Settings(openai_base_url=server.base_url, request_timeout_s=2.0, max_retries=0)
        assert "".join(asyncio.run(collect(OpenAIChat(settings)))) == "Hello there!"
        assert server.requests[0].headers["authorization"] == f"Bearer {PLACEHOLDER_API_KEY}"


def test_chat_rejected_key_names_setting_once_and_hides_key(server: FakeOpenAIServer) -> None:
    settings = settings_for(server, openai_api_key=KEY + "-wrong")
    err = expect_error(AuthenticationFailed, collect(OpenAIChat(settings)))
    assert "OPENAI_API_KEY" in str(err)
    assert "OPENAI_BASE_URL" in str(err)  # a custom server is configured, so it may be the culprit
    assert KEY not in str(err) and KEY not in repr(err) and KEY not in err.hint
    assert len(server.requests) == 1  # a bad key is not retried


@pytest.mark.parametrize("stage", ["stt", "llm", "tts"])
def test_after_a_401_a_backend_sends_nothing_until_its_settings_change(server: FakeOpenAIServer, stage: str) -> None:
    def call(settings: Settings) -> Any:
        if stage == "stt":
            return transcribe(OpenAISTT(settings), np.zeros(16000, np.float32))
        return collect(OpenAIChat(settings)) if stage == "llm" else speak(OpenAITTS(settings))

    wrong = settings_for(server, openai_api_key="sk-revoked-key-42")
    backend = {"stt": OpenAISTT, "llm": OpenAIChat, "tts": OpenAITTS}[stage](wrong)

    async def three_calls() -> list[str]:
        messages = []
        for _ in range(3):
            try:
                if stage == "stt":
                    await backend.transcribe(np.zeros(16000, np.float32))
                elif stage == "llm":
                    [d async for d in backend.stream(MESSAGES)]
                else:
                    [c async for c in backend.synthesize("Hello.")]
            except AuthenticationFailed as exc:
                messages.append(str(exc))
        await backend.aclose()
        return messages

    messages = asyncio.run(three_calls())
    assert len(messages) == 3 and len(set(messages)) == 1 and "OPENAI_API_KEY" in messages[0]
    assert "sk-revoked" not in messages[0]
    assert len(server.requests) == 1
    asyncio.run(call(settings_for(server)))  # the key fixed: new settings, a new backend, calls again
    assert len(server.requests) == 2


def test_chat_429_with_retry_after_then_success(server: FakeOpenAIServer) -> None:
    server.plan(CHAT, error_reply(429, headers=FAST_RETRY), error_reply(429, headers=FAST_RETRY))
    deltas = asyncio.run(collect(OpenAIChat(settings_for(server, max_retries=2))))
    assert "".join(deltas) == "Hello there!"
    assert len(server.requests_to(CHAT)) == 3


def test_chat_429_beyond_retries_is_rate_limited(server: FakeOpenAIServer) -> None:
    server.plan(CHAT, *[error_reply(429, "slow down", headers=FAST_RETRY)] * 5)
    err = expect_error(RateLimited, collect(OpenAIChat(settings_for(server, max_retries=1))))
    assert "slow down" in str(err) and err.retryable
    assert len(server.requests_to(CHAT)) == 2


def test_chat_persistent_500_is_unavailable_after_max_retries(server: FakeOpenAIServer) -> None:
    server.plan(CHAT, *[error_reply(500, "boom", headers=FAST_RETRY)] * 10)
    err = expect_error(ProviderUnavailable, collect(OpenAIChat(settings_for(server, max_retries=2))))
    assert "500" in str(err) and server.base_url in str(err)
    assert len(server.requests_to(CHAT)) == 3


def test_chat_other_4xx_is_provider_error_with_server_message(server: FakeOpenAIServer) -> None:
    server.plan(CHAT, error_reply(404, "The model `gpt-nope` does not exist"))
    err = expect_error(ProviderError, collect(OpenAIChat(settings_for(server))))
    assert not isinstance(err, ProviderUnavailable)
    assert "gpt-nope" in str(err) and "VOICECHAT_OPENAI_" in str(err)
    assert len(server.requests) == 1


def test_chat_read_timeout_is_unavailable_quickly(server: FakeOpenAIServer) -> None:
    server.plan(CHAT, *[Reply(delay_s=30)] * 3)
    settings = settings_for(server, request_timeout_s=0.3, max_retries=1)
    started = time.monotonic()
    err = expect_error(ProviderUnavailable, collect(OpenAIChat(settings)))
    assert time.monotonic() - started < 10  # bounded by timeout × attempts, not the server's 30 s
    assert "0.3 s" in str(err) and "VOICECHAT_REQUEST_TIMEOUT_S" in str(err)
    assert len(server.requests_to(CHAT)) == 2


def test_chat_connection_refused_is_unavailable() -> None:
    with FakeOpenAIServer() as server:
        url = server.base_url
    settings = Settings(openai_api_key=KEY, openai_base_url=url, request_timeout_s=1.0, max_retries=0)
    err = expect_error(ProviderUnavailable, collect(OpenAIChat(settings)))
    assert url in str(err)


def test_chat_stream_cut_mid_reply_keeps_partial_text(server: FakeOpenAIServer) -> None:
    server.plan(CHAT, Reply(deltas=["One", " two", " three"], then="abort"))
    received: list[str] = []

    async def run() -> None:
        chat = OpenAIChat(settings_for(server))
        async for delta in chat.stream(MESSAGES):
            received.append(delta)
        await chat.aclose()

    err = expect_error(StreamInterrupted, run())
    assert err.partial == "One two three" == "".join(received)
    assert len(server.requests) == 1  # a half-streamed reply is not silently re-requested


def test_chat_stream_stalled_mid_reply_times_out_with_partial(server: FakeOpenAIServer) -> None:
    server.plan(CHAT, Reply(deltas=["Half", " a"], then="stall"))
    # The stall is endless: a timeout long enough that the first words always arrive before it (0.3 s could
    # expire first on a loaded machine, and the SDK's retry then got a whole default reply).
    err = expect_error(StreamInterrupted, collect(OpenAIChat(settings_for(server, request_timeout_s=2.0))))
    assert err.partial == "Half a"


def test_chat_malformed_json_chunk_interrupts_with_partial(server: FakeOpenAIServer) -> None:
    writes = [sse(chat_chunk("Hello")), b"data: {not json\n\n", sse(chat_chunk(" world")), sse("[DONE]")]
    server.plan(CHAT, Reply(writes=writes))
    err = expect_error(StreamInterrupted, collect(OpenAIChat(settings_for(server))))
    assert err.partial == "Hello"
    assert "malformed" in str(err)


def test_chat_malformed_first_chunk_is_a_voicechat_error(server: FakeOpenAIServer) -> None:
    server.plan(CHAT, Reply(writes=[b"data: <html>oops</html>\n\n"]))
    err = expect_error(VoicechatError, collect(OpenAIChat(settings_for(server))))
    assert isinstance(err, ProviderError) and "malformed" in str(err)


@pytest.mark.parametrize("how", ["aclose", "cancel"])
def test_chat_closing_stream_early_disconnects_from_server(server: FakeOpenAIServer, how: str) -> None:
    server.plan(CHAT, Reply(deltas=["First", " second"], then="keepalive"))

    async def run() -> bool:
        chat = OpenAIChat(settings_for(server))
        gen = chat.stream(MESSAGES)
        if how == "aclose":
            assert await gen.__anext__() == "First"
            await gen.aclose()
        else:
            got_first = asyncio.Event()

            async def consume() -> None:
                async for _ in gen:
                    got_first.set()

            task = asyncio.create_task(consume())
            await got_first.wait()
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
        disconnected = await asyncio.to_thread(server.disconnected.wait, 5)
        await chat.aclose()
        return disconnected

    assert asyncio.run(run()), "server never saw the client hang up"


# --- text to speech ---------------------------------------------------------------------------


def test_tts_streams_non_silent_int16_chunks_and_sends_settings(server: FakeOpenAIServer) -> None:
    pcm = sine_pcm(0.5)
    server.plan(SPEECH, Reply(pcm=pcm, writes=split_every(pcm, 1001)))  # odd sizes split samples
    settings = settings_for(server, openai_voice="nova", tts_speed=1.2, openai_tts_model="tts-1")

    chunks = asyncio.run(speak(OpenAITTS(settings), "Hello there."))

    assert all(c.dtype == np.int16 and c.ndim == 1 for c in chunks)
    audio = np.concatenate(chunks)
    assert np.array_equal(audio, np.frombuffer(pcm, dtype="<i2"))  # no byte shifted by odd splits
    assert np.sqrt(np.mean(audio.astype(np.float64) ** 2)) > 1000
    assert all(480 <= c.size <= 2400 for c in chunks[:-1])  # 20–100 ms at 24 kHz
    (request,) = server.requests_to(SPEECH)
    assert request.json == {
        "model": "tts-1",
        "voice": "nova",
        "input": "Hello there.",
        "speed": 1.2,
        "response_format": "pcm",
    }


def test_tts_yields_first_audio_before_the_body_is_complete(server: FakeOpenAIServer) -> None:
    gate = threading.Event()
    pcm = sine_pcm(0.4)
    reply = Reply(pcm=pcm, writes=[pcm[:4801], pcm[4801:]], gate=gate, gate_before=1)
    server.plan(SPEECH, reply)

    async def run() -> tuple[bool, int]:
        finished_before_first = None
        total = 0
        tts = OpenAITTS(settings_for(server, request_timeout_s=10))
        async for chunk in tts.synthesize("Hi"):
            if finished_before_first is None:
                finished_before_first = reply.done.is_set()
                gate.set()  # only now may the server send the rest
            total += chunk.size
        await tts.aclose()
        return bool(finished_before_first), total

    finished_before_first, total = asyncio.run(run())
    assert not finished_before_first, "first chunk only arrived after the whole body was sent"
    assert total == len(pcm) // 2


def test_tts_rejects_unknown_voice_naming_the_setting(server: FakeOpenAIServer) -> None:
    with pytest.raises(ConfigError, match="VOICECHAT_OPENAI_VOICE"):
        OpenAITTS(settings_for(server, openai_voice="darth"))


def test_tts_rejected_key_is_authentication_failed(server: FakeOpenAIServer) -> None:
    tts = OpenAITTS(settings_for(server, openai_api_key="sk-other-key-xyz"))
    err = expect_error(AuthenticationFailed, speak(tts))
    assert "OPENAI_API_KEY" in str(err) and "sk-other-key-xyz" not in str(err)
    assert len(server.requests) == 1


def test_tts_body_cut_off_is_unavailable(server: FakeOpenAIServer) -> None:
    pcm = sine_pcm(0.2)
    server.plan(SPEECH, Reply(pcm=pcm, writes=[pcm[:2000]], then="abort"))
    err = expect_error(ProviderUnavailable, speak(OpenAITTS(settings_for(server))))
    assert server.base_url in str(err)


# --- configuration and packaging ----------------------------------------------------------------


def test_missing_key_and_base_url_is_config_error() -> None:
    with pytest.raises(ConfigError, match="OPENAI_API_KEY"):
        OpenAIChat(Settings(openai_api_key=None, openai_base_url=None))


def test_missing_openai_package_says_how_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "openai", None)  # makes `import openai` raise ImportError
    for backend in (OpenAISTT, OpenAIChat, OpenAITTS):
        with pytest.raises(BackendUnavailable, match=r'pip install "voicechat\[openai\]"'):
            backend(Settings(openai_api_key=KEY))


def test_translate_error_never_leaks_key_in_any_branch() -> None:
    settings = Settings(openai_api_key=KEY)
    for exc in (ValueError(f"bad {KEY}"), RuntimeError(KEY), ConnectionError(KEY)):
        err = translate_error(exc, settings)
        assert KEY not in str(err) and KEY not in repr(err)
