"""Each model stage on its own OpenAI-format server (VOICECHAT_<STAGE>_BASE_URL / _API_KEY).

Two real HTTP servers on 127.0.0.1 stand in for, say, a Whisper + speech server and a vLLM box;
the checks are on what each one actually received.
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from voicechat.config import Settings
from voicechat.errors import AuthenticationFailed
from voicechat.llm.base import Message
from voicechat.llm.openai import OpenAIChat
from voicechat.openai_client import PLACEHOLDER_API_KEY
from voicechat_bench_kit.openai_loopback_server import (
    CHAT,
    COMPLETIONS,
    SPEECH,
    TRANSCRIPTIONS,
    FakeOpenAIServer,
    Reply,
    serve,
)

AUDIO_KEY = "sk-audio-SECRET-0123456789"
LLM_KEY = "sk-llm-SECRET-9876543210"


@pytest.fixture
def audio_server() -> Iterator[FakeOpenAIServer]:
    yield from serve(api_key=AUDIO_KEY)


@pytest.fixture
def llm_server() -> Iterator[FakeOpenAIServer]:
    yield from serve(api_key=LLM_KEY)


def load(environ: dict[str, str]) -> Settings:
    return Settings.load({}, environ=environ, dotenv_path=None)


def test_each_stage_falls_back_to_openai_settings() -> None:
    s = load(
        {
            "OPENAI_API_KEY": AUDIO_KEY,
            "OPENAI_BASE_URL": "http://audio:9000/v1",
            "VOICECHAT_LLM_BASE_URL": "http://vllm:8000/v1",
            "VOICECHAT_LLM_API_KEY": LLM_KEY,
        }
    )
    stt, llm = s.endpoint("stt"), s.endpoint("llm")
    assert (stt.base_url, stt.api_key, stt.url_var, stt.key_var) == (
        "http://audio:9000/v1",
        AUDIO_KEY,
        "OPENAI_BASE_URL",
        "OPENAI_API_KEY",
    )
    assert (llm.base_url, llm.api_key, llm.url_var, llm.key_var) == (
        "http://vllm:8000/v1",
        LLM_KEY,
        "VOICECHAT_LLM_BASE_URL",
        "VOICECHAT_LLM_API_KEY",
    )
    assert [s.backend(k) for k in ("stt", "llm", "tts")] == ["openai"] * 3
    assert s.backend_reason("llm") == "openai (VOICECHAT_LLM_BASE_URL is set)"


def test_a_stage_on_its_own_server_keeps_the_others_local() -> None:
    """The llama.cpp-server setup: only the LLM leaves the process, no key anywhere."""
    s = load({"VOICECHAT_LLM_BASE_URL": "http://127.0.0.1:8080/v1"})
    assert [s.backend(k) for k in ("stt", "llm", "tts")] == ["local", "openai", "local"]
    assert s.endpoint("llm").api_key is None


def test_openai_key_is_not_sent_to_another_stage_server() -> None:
    s = load({"OPENAI_API_KEY": AUDIO_KEY, "VOICECHAT_LLM_BASE_URL": "http://ollama:11434/v1"})
    assert s.endpoint("stt").api_key == AUDIO_KEY
    assert s.endpoint("llm").api_key is None
    # …unless that stage's server *is* OPENAI_BASE_URL's.
    same = load(
        {"OPENAI_API_KEY": AUDIO_KEY, "OPENAI_BASE_URL": "http://gw:1/v1", "VOICECHAT_LLM_BASE_URL": "http://gw:1/v1/"}
    )
    assert same.endpoint("llm").api_key == AUDIO_KEY


def test_stage_keys_never_show() -> None:
    s = load(
        {
            "VOICECHAT_STT_API_KEY": AUDIO_KEY,
            "VOICECHAT_LLM_API_KEY": LLM_KEY,
            "VOICECHAT_TTS_BASE_URL": "http://user:pw-SECRET@tts:5000/v1?api-key=q-SECRET",
        }
    )
    shown = repr(s) + str(s.public_dict()) + "".join(s.stage_line(k) for k in ("stt", "llm", "tts"))
    shown += repr(s.endpoint("stt")) + repr(s.for_stage("llm"))
    for secret in (AUDIO_KEY, LLM_KEY, "SECRET"):
        assert secret not in shown
    assert s.public_dict()["llm_api_key_set"] is True and "http://tts:5000/v1" in s.stage_line("tts")


def test_doctor_shows_each_stage_server_without_keys() -> None:
    env = {
        **os.environ,
        "OPENAI_API_KEY": AUDIO_KEY,
        "VOICECHAT_LLM_BASE_URL": "http://10.1.2.3:8000/v1",
        "VOICECHAT_LLM_API_KEY": LLM_KEY,
        "VOICECHAT_STT": "local",
    }
    proc = subprocess.run(
        [sys.executable, "-m", "voicechat", "doctor"], capture_output=True, text=True, timeout=60, env=env, check=True
    )
    lines = dict(line.split(": ", 1) for line in proc.stdout.splitlines()[1:4])
    assert lines["stt"].startswith("local (set explicitly)")
    assert "http://10.1.2.3:8000/v1 (VOICECHAT_LLM_BASE_URL), key set (VOICECHAT_LLM_API_KEY)" in lines["llm"]
    assert "https://api.openai.com/v1 (default), key set (OPENAI_API_KEY)" in lines["tts"]
    assert AUDIO_KEY not in proc.stdout and LLM_KEY not in proc.stdout


def test_rejected_stage_key_names_the_stage_variable(llm_server: FakeOpenAIServer) -> None:
    s = load(
        {
            "OPENAI_API_KEY": AUDIO_KEY,
            "VOICECHAT_LLM_BASE_URL": llm_server.base_url,
            "VOICECHAT_LLM_API_KEY": "sk-wrong-0000",
            "VOICECHAT_MAX_RETRIES": "0",
        }
    )
    chat = OpenAIChat(s)

    async def run() -> None:
        try:
            async for _ in chat.stream([Message("user", "Hi")]):
                pass
        finally:
            await chat.aclose()

    with pytest.raises(AuthenticationFailed) as info:
        asyncio.run(run())
    assert "VOICECHAT_LLM_API_KEY" in info.value.hint and "VOICECHAT_LLM_BASE_URL" in info.value.hint
    assert llm_server.base_url in str(info.value) and "sk-wrong-0000" not in str(info.value) + info.value.hint


def test_a_scoring_server_of_its_own_names_its_own_variables_and_gets_only_its_key(
    llm_server: FakeOpenAIServer,
) -> None:
    """The end of turn scored on a server of its own (VOICECHAT_LINE_END_BASE_URL): a rejected key
    names the variables that point there, not the LLM stage's, and the LLM stage's key never goes there."""
    from voicechat.llm.served_line_end import ServedLineEndScorer

    s = load(
        {
            "OPENAI_API_KEY": AUDIO_KEY,
            "VOICECHAT_LLM_BASE_URL": "http://vllm:8000/v1",
            "VOICECHAT_LLM_API_KEY": LLM_KEY,
            "VOICECHAT_LINE_END_BASE_URL": llm_server.base_url,
            "VOICECHAT_LINE_END_API_KEY": "sk-wrong-1111",
        }
    )
    scorer = ServedLineEndScorer(s)

    async def run() -> None:
        try:
            await scorer.ascore([], "Hello there")
        finally:
            await scorer.aclose()

    with pytest.raises(AuthenticationFailed) as info:
        asyncio.run(run())
    said = str(info.value) + info.value.hint
    assert "VOICECHAT_LINE_END_API_KEY" in said and "VOICECHAT_LINE_END_BASE_URL" in said, said
    assert "VOICECHAT_LLM" not in said and "sk-wrong-1111" not in said, said
    sent = [r.headers.get("authorization", "") for r in llm_server.requests]
    assert sent and all(h == "Bearer sk-wrong-1111" for h in sent), sent


# The first completion token's top alternatives, as the two shapes servers answer /v1/completions
# with logprobs: OpenAI's legacy dict (llama-cpp-python's server, vLLM) and the chat format's list
# (llama.cpp's own llama-server, copied from its answer). P(line ends) = 0.55 + 0.25 = 0.8.
TOP_ALTERNATIVES = {"\n": math.log(0.55), ".": math.log(0.25), " and": math.log(0.15), " I": math.log(0.05)}


def legacy_completion(top: dict[str, float]) -> dict[str, object]:
    token = max(top, key=lambda t: top[t])
    logprobs = {"tokens": [token], "token_logprobs": [top[token]], "top_logprobs": [top], "text_offset": [0]}
    choice = {"text": token, "index": 0, "logprobs": logprobs, "finish_reason": "length"}
    return {"id": "cmpl-1", "object": "text_completion", "created": 1, "model": "m", "choices": [choice]}


def llama_server_completion(top: dict[str, float]) -> dict[str, object]:
    listed = [{"id": i, "token": t, "bytes": list(t.encode()), "logprob": lp} for i, (t, lp) in enumerate(top.items())]
    first = {**listed[0], "top_logprobs": listed}
    choice = {"text": first["token"], "index": 0, "logprobs": {"content": [first]}, "finish_reason": "length"}
    return {"id": "chatcmpl-1", "object": "text_completion", "created": 1, "model": "m", "choices": [choice]}


def test_the_end_of_turn_is_scored_from_either_shape_servers_send_its_probabilities_in(
    llm_server: FakeOpenAIServer,
) -> None:
    """llama.cpp's own server lists the next token's alternatives in the chat format's shape, not
    OpenAI's legacy one: both must give the same score, or a team serving Gemma on llama-server
    would see every turn end on silence. One token asked, its alternatives, greedy."""
    from voicechat.llm.served_line_end import ServedLineEndScorer

    s = load({"VOICECHAT_LINE_END_BASE_URL": llm_server.base_url, "VOICECHAT_LINE_END_API_KEY": LLM_KEY})
    llm_server.plan(COMPLETIONS, Reply(body=legacy_completion(TOP_ALTERNATIVES)))
    llm_server.plan(COMPLETIONS, Reply(body=llama_server_completion(TOP_ALTERNATIVES)))
    scorer = ServedLineEndScorer(s)

    async def run() -> list[float | None]:
        try:
            return [await scorer.ascore([], "Turn off the lights."), await scorer.ascore([], "Turn off the lights.")]
        finally:
            await scorer.aclose()

    assert asyncio.run(run()) == [pytest.approx(0.8), pytest.approx(0.8)]
    asked = [r.json for r in llm_server.requests_to(COMPLETIONS)]
    assert all((a["max_tokens"], a["temperature"], a["logprobs"]) == (1, 0.0, 20) for a in asked), asked
    assert all(a["prompt"].rstrip().endswith("Turn off the lights") for a in asked), asked


def _scored_on(server: FakeOpenAIServer, **more: str) -> Settings:
    """Cloud stages, the end of turn scored on ``server``."""
    return load(
        {
            "OPENAI_API_KEY": AUDIO_KEY,
            "VOICECHAT_LINE_END_BASE_URL": server.base_url,
            "VOICECHAT_LINE_END_API_KEY": LLM_KEY,
            **more,
        }
    )


PLAYED = [Message("user", "Hello"), Message("assistant", "Hello there! How can I help you today?")]


def test_a_served_scorer_is_primed_with_the_conversation_its_next_score_starts_with(
    llm_server: FakeOpenAIServer,
) -> None:
    """When the user starts to speak, the scoring server is sent the conversation so far, so its slot
    holds the reply just played and the score at the pause reads only the user's words: the prime's
    prompt must be exactly the start of the score's. Speaking again within the turn sends nothing
    (the server has read it all; each request costs it a pass of the output layer)."""
    from voicechat.llm.served_line_end import ServedLineEndScorer
    from voicechat.warm_up import prime_next_turn

    s = _scored_on(llm_server, VOICECHAT_LINE_END_PRIME="1")
    for _ in range(2):
        llm_server.plan(COMPLETIONS, Reply(body=legacy_completion(TOP_ALTERNATIVES)))
    scorer = ServedLineEndScorer(s)
    history = PLAYED

    async def run() -> float | None:
        try:
            primed = prime_next_turn(OpenAIChat(s), history, "", scorer)
            assert primed is not None, "a served scorer beside a cloud reply model was not primed"
            await primed
            score = await scorer.ascore(history, "Turn off the lights.")
            again = prime_next_turn(OpenAIChat(s), history, "", scorer)  # the user speaks again, same turn
            assert again is not None
            await again
            return score
        finally:
            await scorer.aclose()

    assert asyncio.run(run()) == pytest.approx(0.8)
    prime, score = (r.json["prompt"] for r in llm_server.requests_to(COMPLETIONS))
    assert prime.endswith("How can I help you today?"), prime
    assert score.startswith(prime) and score[len(prime) :].strip().endswith("Turn off the lights"), (prime, score)


def test_a_served_scorer_by_default_is_sent_only_the_scores(llm_server: FakeOpenAIServer) -> None:
    """Unprimed by default: a deployment serves the score to hold more calls per core, and each
    prime costs the server a pass of the output layer (a third more CPU per call, measured)."""
    from voicechat.llm.served_line_end import ServedLineEndScorer
    from voicechat.warm_up import prime_next_turn

    s = _scored_on(llm_server)
    llm_server.plan(COMPLETIONS, Reply(body=legacy_completion(TOP_ALTERNATIVES)))
    scorer = ServedLineEndScorer(s)
    history = PLAYED

    async def run() -> float | None:
        try:
            primed = prime_next_turn(OpenAIChat(s), history, "", scorer)
            if primed is not None:
                await primed
            return await scorer.ascore(history, "Turn off the lights.")
        finally:
            await scorer.aclose()

    assert asyncio.run(run()) == pytest.approx(0.8)
    prompts = [r.json["prompt"] for r in llm_server.requests_to(COMPLETIONS)]
    assert len(prompts) == 1 and prompts[0].strip().endswith("Turn off the lights"), prompts


@pytest.mark.slow
def test_voice_turn_splits_across_two_servers(
    audio_server: FakeOpenAIServer, llm_server: FakeOpenAIServer, make_speech, tmp_path: Path
) -> None:
    """STT and TTS on one server, the LLM on another: each gets only its requests and its own key."""
    audio_server.transcript = "What is the capital of Italy?"
    llm_server.chat_deltas = ("Rome is ", "the capital.")
    env = {
        **os.environ,
        "OPENAI_API_KEY": AUDIO_KEY,
        "OPENAI_BASE_URL": audio_server.base_url,
        "VOICECHAT_LLM_BASE_URL": llm_server.base_url,
        "VOICECHAT_LLM_API_KEY": LLM_KEY,
        "VOICECHAT_MAX_RETRIES": "0",
        "HF_HUB_OFFLINE": "1",
    }
    wav = make_speech("What is the capital of Italy?", rate=16000)
    proc = subprocess.run(
        [sys.executable, "-m", "voicechat", "turn", str(wav), "--json", "--fast"],
        capture_output=True,
        text=True,
        timeout=180,
        env=env,
    )
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout.strip().splitlines()[-1])
    assert data["transcript"] == "What is the capital of Italy?" and data["reply"] == "Rome is the capital."
    assert data["reply_audio_s"] > 0.2
    assert audio_server.requests_to(TRANSCRIPTIONS) and audio_server.requests_to(SPEECH)
    assert not audio_server.requests_to(CHAT)
    assert [r.path for r in llm_server.requests] == [CHAT]
    assert {r.headers["authorization"] for r in audio_server.requests} == {f"Bearer {AUDIO_KEY}"}
    assert llm_server.requests[0].headers["authorization"] == f"Bearer {LLM_KEY}"


def test_keyless_stage_server_gets_a_placeholder_not_the_openai_key() -> None:
    with FakeOpenAIServer(api_key=None) as ollama:
        s = load({"OPENAI_API_KEY": AUDIO_KEY, "VOICECHAT_LLM_BASE_URL": ollama.base_url})
        chat = OpenAIChat(s)

        async def run() -> str:
            try:
                return "".join([d async for d in chat.stream([Message("user", "Hi")])])
            finally:
                await chat.aclose()

        assert asyncio.run(run()) == "Hello there!"
        assert ollama.requests[0].headers["authorization"] == f"Bearer {PLACEHOLDER_API_KEY}"


def test_widget_status_names_each_stage_server() -> None:
    from voicechat.notebook.widget import stages_summary

    s = load({"VOICECHAT_LLM_BASE_URL": "http://k:pw@10.0.0.9:8000/v1", "VOICECHAT_LLM_API_KEY": LLM_KEY})
    assert stages_summary(s) == "stt local · llm openai @ http://10.0.0.9:8000/v1 · tts local"
    assert stages_summary(s.replace(stt="browser")).startswith("stt browser · ")
