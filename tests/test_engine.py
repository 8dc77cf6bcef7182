"""The conversation engine on the real offline stack: whole turns, barge-in, stop, silence."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import wav_frames_as_av
from voicechat.audio import iter_wav_frames, read_audio, rms_dbfs
from voicechat.config import Settings
from voicechat.conversation_factory import create_conversation
from voicechat.engine import Conversation
from voicechat.events import (
    AudioOut,
    ErrorEvent,
    FinalTranscript,
    Interrupted,
    PartialTranscript,
    ReplyDelta,
    ReplyDone,
    State,
    StateChanged,
    TurnMetrics,
)
from voicechat.file_turns import run_turn_from_wav

pytestmark = pytest.mark.slow

QUESTION = "What is the capital of Italy?"


@pytest.fixture(scope="module")
def offline():
    from voicechat.backends import make_llm, make_stt, make_tts

    s = Settings.load({"stt": "local", "llm": "local", "tts": "local"}, environ={}, dotenv_path=None)
    return s, make_stt(s), make_llm(s), make_tts(s)


def _conv(offline, **kw) -> Conversation:
    s, stt, llm, tts = offline
    return create_conversation(s, stt=stt, llm=llm, tts=tts, **kw)


def test_full_offline_turn_gives_transcript_reply_and_audible_speech(offline, make_speech) -> None:
    wav = make_speech(QUESTION, rate=48000)

    async def run():
        conv = _conv(offline)
        try:
            return await run_turn_from_wav(conv, wav, realtime=False)
        finally:
            await conv.aclose()

    r = asyncio.run(run())
    assert "capital" in r.transcript.lower() and "italy" in r.transcript.lower()
    assert len(r.reply.split()) >= 2
    assert r.errors == []
    pcm = r.pcm
    assert len(pcm) % 960 == 0 and len(pcm) / 48000 > 0.5
    assert rms_dbfs(pcm) > -35  # speech, not silence
    m = r.metrics
    assert m is not None and all(
        v is not None and v >= 0 for v in (m.stt_ms, m.llm_first_token_ms, m.tts_first_audio_ms, m.first_audio_ms)
    )
    assert m.first_audio_ms >= 500  # includes the end-of-turn wait
    deltas = "".join(e.text for e in r.events if isinstance(e, ReplyDelta))
    assert deltas.strip() == r.reply
    states = [e.state for e in r.events if isinstance(e, StateChanged)]
    assert states[:2] == [State.THINKING, State.SPEAKING]


def test_speech_during_the_reply_interrupts_it_quickly(offline, make_speech) -> None:
    # 3 s of silence: speech beginning within a second of the turn's release (at the latest at the 1.6 s
    # ceiling, when the score comes late on a slow CPU) would continue the turn instead of interrupting
    question = wav_frames_as_av(make_speech(QUESTION, rate=48000, trail_s=3.0), "fltp")
    interruption = wav_frames_as_av(
        make_speech("Wait, stop, I have another question.", rate=48000, lead_s=0.0, trail_s=0.0), "fltp"
    )

    async def run():
        conv = _conv(offline)
        events: list[object] = []
        for f in question:
            await conv.feed(f)
        while not any(isinstance(e, AudioOut) for e in events):
            await asyncio.sleep(0.005)
            events += conv.drain()
        assert conv.replying
        fed_ms = None
        for i, f in enumerate(interruption):
            await conv.feed(f)
            events += conv.drain()
            if any(isinstance(e, Interrupted) for e in events):
                fed_ms = (i + 1) * 20
                break
        await asyncio.sleep(0.3)
        events += conv.drain()
        history = list(conv.history.entries)
        await conv.aclose()
        return events, fed_ms, history

    events, fed_ms, history = asyncio.run(run())
    cut = next(i for i, e in enumerate(events) if isinstance(e, Interrupted))
    assert events[cut].turn == 1 and events[cut].reason == "barge-in"
    # voice onset to flush, in audio time: 200 ms of voiced audio (a cough or an "mm" is shorter), counted
    # in the VAD's 32 ms windows; "Wait," alone has less, so the cut comes early in "stop" (measured 620 ms
    # at a 250 ms minimum, ≤ 400 at 150)
    assert fed_ms is not None and fed_ms <= 650
    assert not any(isinstance(e, AudioOut) and e.turn == 1 for e in events[cut:])
    assert history[-1].role == "assistant" and history[-1].interrupted


def test_half_duplex_ignores_speech_while_the_reply_plays(offline, make_speech) -> None:
    # For speakers without echo cancellation: the reply's own sound in the microphone must not cut it.
    question = wav_frames_as_av(make_speech(QUESTION, rate=48000, trail_s=3.0), "fltp")
    over = wav_frames_as_av(make_speech("Wait, stop, I have another question.", rate=48000, trail_s=0.0), "fltp")

    async def run():
        conv = _conv(offline, half_duplex=True)
        events: list[object] = []
        for f in question:
            await conv.feed(f)
        while not any(isinstance(e, AudioOut) for e in events):
            await asyncio.sleep(0.005)
            events += conv.drain()
        assert conv.replying
        for f in over:  # fed within the reply's playback, which outlasts it
            await conv.feed(f)
        assert conv.replying
        await conv.wait_reply()
        events += conv.drain()
        history = list(conv.history.entries)
        await conv.aclose()
        return events, history

    events, history = asyncio.run(run())
    assert not any(isinstance(e, Interrupted) for e in events)
    assert history[-1].role == "assistant" and not history[-1].interrupted


def test_stop_button_cuts_reply_and_engine_listens_again(offline, make_speech) -> None:
    first = wav_frames_as_av(make_speech("Tell me about the history of Rome.", rate=16000), "s16")
    wav = make_speech(QUESTION, rate=16000)

    async def run():
        conv = _conv(offline)
        events: list[object] = []
        for f in first:
            await conv.feed(f)
        await conv.end_of_input()  # a statement may go on: only the end of the file says it is over
        while not any(isinstance(e, (AudioOut, ReplyDelta)) for e in events):
            await asyncio.sleep(0.005)
            events += conv.drain()
        conv.stop_speaking()
        await asyncio.sleep(0.2)
        events += conv.drain()
        state, replying = conv.state, conv.replying
        # and it still hears the next question
        r = await run_turn_from_wav(conv, wav, realtime=False)
        await conv.aclose()
        return events, state, replying, r

    events, state, replying, second = asyncio.run(run())
    assert any(isinstance(e, Interrupted) and e.reason == "stop" for e in events)
    assert any(isinstance(e, ReplyDone) and e.interrupted for e in events)
    assert state == State.LISTENING and not replying
    assert any(isinstance(e, FinalTranscript) and "italy" in e.text.lower() for e in second.events)


def test_silence_and_noise_never_reach_the_llm(offline) -> None:
    rng = np.random.default_rng(3)

    async def run():
        conv = _conv(offline)
        for _ in range(150):
            await conv.feed(np.zeros(960, np.int16), 48000)
        for _ in range(150):
            await conv.feed((rng.standard_normal(960) * 1500).astype(np.int16), 48000)
        await conv.end_of_input()
        await conv.wait_reply()
        events = conv.drain()
        await conv.aclose()
        return conv, events

    conv, events = asyncio.run(run())
    assert not any(isinstance(e, (FinalTranscript, ReplyDelta, AudioOut)) for e in events)
    assert conv.history.entries == []


def test_typed_text_from_the_browser_gets_a_spoken_reply_and_history_grows(offline) -> None:
    async def run():
        conv = _conv(offline, output_rate=24000)
        conv.submit_text("What is two plus two?")
        await conv.wait_reply()
        conv.submit_text("And what is the capital of France?")
        await conv.wait_reply()
        events = conv.drain()
        await conv.aclose()
        return conv, events

    conv, events = asyncio.run(run())
    roles = [e.role for e in conv.history.entries]
    assert roles == ["user", "assistant", "user", "assistant"]
    assert "paris" in conv.history.entries[3].content.lower()
    assert {e.turn for e in events if isinstance(e, AudioOut)} == {1, 2}
    assert all(e.sample_rate == 24000 and len(e.pcm) % 480 == 0 for e in events if isinstance(e, AudioOut))
    assert len([e for e in events if isinstance(e, TurnMetrics)]) == 2
    assert not [e for e in events if isinstance(e, ErrorEvent)]


def test_cli_turn_prints_json_and_writes_reply_wav(make_speech, tmp_path: Path) -> None:
    out = tmp_path / "reply.wav"
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "voicechat",
            "turn",
            str(make_speech(QUESTION, rate=44100, channels=2)),
            "--out",
            str(out),
            "--json",
            "--stt",
            "local",
            "--llm",
            "local",
            "--tts",
            "local",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout.strip().splitlines()[-1])
    assert "italy" in data["transcript"].lower() and data["reply"]
    assert set(data["metrics"]) == {"stt_ms", "llm_first_token_ms", "tts_first_audio_ms", "first_audio_ms"}
    assert all(isinstance(v, float) for v in data["metrics"].values())
    reply = read_audio(out)
    assert len(reply) > 8000 and rms_dbfs(reply) > -35
    _frames, rate = iter_wav_frames(out)
    assert rate == 48000


def test_cli_transcribe_and_doctor(make_speech) -> None:
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "voicechat",
            "transcribe",
            str(make_speech("Please close the window.", rate=8000)),
            "--stt",
            "local",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    assert proc.returncode == 0 and "close the window" in proc.stdout.lower()
    proc = subprocess.run(
        [sys.executable, "-m", "voicechat", "doctor"], capture_output=True, text=True, timeout=60, env=env
    )
    assert proc.returncode == 0
    assert "local (no OPENAI_API_KEY set: offline default)" in proc.stdout
    assert "no OPENAI_API_KEY" in proc.stdout


def test_a_pause_mid_question_runs_ahead_but_leaves_no_trace_when_speech_resumes(offline, piper_voice) -> None:
    from tests.conftest import piper_pcm
    from voicechat.audio import InputConverter

    def speech(text: str) -> np.ndarray:
        pcm, rate = piper_pcm(piper_voice, text)
        x = InputConverter().convert(pcm, rate)
        loud = np.flatnonzero(np.abs(x) > 0.02)  # trim Piper's own silence so the pause is exact
        return x[loud[0] : loud[-1] + 1]

    # 350 ms pause: past the 150 ms speculative point, well short of a 700 ms end of turn
    # (Piper's soft onsets can hide ~100 ms of the next word from the VAD).
    audio = np.concatenate(
        [
            np.zeros(4800, np.float32),
            speech("What is the capital"),
            np.zeros(5600, np.float32),
            speech("of Italy?"),
            np.zeros(16000, np.float32),
        ]
    )
    s, stt, llm, tts = offline
    s = s.replace(end_of_turn_ms=700)

    async def run():
        conv = create_conversation(s, stt=stt, llm=llm, tts=tts)
        for i in range(0, len(audio), 320):  # real time, so the speculative turn really runs
            conv.feed_16k(audio[i : i + 320])
            await asyncio.sleep(0.02)
        await conv.wait_reply()
        events = conv.drain()
        await conv.aclose()
        return conv, events

    conv, events = asyncio.run(run())
    finals = [e for e in events if isinstance(e, FinalTranscript)]
    assert len(finals) == 1 and finals[0].turn == 1
    words = finals[0].text.lower().split()
    assert "capital" in finals[0].text.lower() and len(words) >= 6  # both parts: "what is the capital of italy"
    assert [e.role for e in conv.history.entries] == ["user", "assistant"]
    assert {e.turn for e in events if isinstance(e, (AudioOut, ReplyDelta, TurnMetrics))} == {1}
    partials = [e.text.lower() for e in events if isinstance(e, PartialTranscript)]
    assert partials and all(p.startswith("what") for p in partials)  # a live transcript while the user spoke
    metrics = next(e for e in events if isinstance(e, TurnMetrics))
    assert metrics.speculative is True  # the final turn was prepared before its end was confirmed


def test_stop_at_the_first_reply_audio_lets_no_more_audio_out_and_listens_again(offline) -> None:
    """The stop arrives while the speaker has more audio queued (the notebook's stop button, mid-sentence).

    Whatever the reply had made but not handed out is dropped: no audio of that turn after the
    interruption (the page has already flushed its queue), and the lights go back to listening and
    stay there. A late chunk used to relight "speaking" with nothing left to turn it off.
    """

    async def run(request: str):
        events: list[object] = []
        conv: Conversation | None = None

        def listener(ev: object) -> None:  # on the engine's loop, inside the reply's delivery
            events.append(ev)
            if isinstance(ev, AudioOut) and conv is not None and not any(isinstance(e, Interrupted) for e in events):
                conv.stop_speaking()

        conv = _conv(offline, output_rate=24000, listener=listener)
        conv.submit_text(request)
        await conv.wait_reply()
        await asyncio.sleep(0.3)  # any delivery still queued on the loop runs now
        state, replying = conv.state, conv.replying
        await conv.aclose()
        return events, state, replying

    stopped = 0
    for request in ("Tell me a long story about a dragon.", "Describe the city of Rome in detail."):
        events, state, replying = asyncio.run(run(request))
        cut = next((i for i, e in enumerate(events) if isinstance(e, Interrupted)), None)
        if cut is None:  # the model's reply had nothing to say aloud (sampling): no stop to test
            continue
        stopped += 1
        assert events[cut].reason == "stop"
        late = [e for e in events[cut:] if isinstance(e, AudioOut)]
        assert late == [], f"{len(late)} audio chunks went out after the stop"
        assert state == State.LISTENING and not replying
    assert stopped, "no reply had audio to stop"


def test_speech_start_reads_the_history_into_the_model_so_the_turn_reads_only_its_words(offline, make_speech) -> None:
    """While the user is still talking, the conversation so far is read into the local model's
    cache (another conversation had the model last), so at their pause only their own words are
    left to read: ~0.4 s less between their pause and the first word on 2 cores."""
    from voicechat.history import Entry
    from voicechat.llm.base import Message
    from voicechat.llm.local import build_prompt

    s, _stt, llm, _tts = offline
    frames, rate = iter_wav_frames(make_speech(QUESTION, rate=16000))

    async def run():
        conv = _conv(offline)
        for i in range(4):
            conv.history.add(Entry("user", f"Name an animal that starts with letter number {i + 1}.", i + 1))
            conv.history.add(Entry("assistant", f"An animal for letter {i + 1} is the ant.", i + 1))
        conv._turn = 4
        llm.warm_up([Message("system", "Another conversation."), Message("user", "Hello there, who are you?")])
        prefix = build_prompt(conv.history.messages(s.prompt(), s.history_messages), llm.language)
        prefix = prefix[: prefix.rindex("\nAssistant:")]
        for f in frames[:40]:  # 0.8 s: speech has started, the turn is far from over
            await conv.feed(f, rate)
        assert conv._priming is not None, "speech started, nothing was read in"
        await conv._priming
        with llm.using_model() as model:
            want = model.tokenize(prefix.encode("utf-8"), add_bos=True, special=True)
            cached = list(model.input_ids[: model.n_tokens])
        for f in frames[40:]:
            await conv.feed(f, rate)
        await conv.end_of_input()
        await conv.wait_reply()
        events = conv.drain()
        await conv.aclose()
        return want, cached, events

    want, cached, events = asyncio.run(run())
    assert cached[: len(want)] == want, "the history is not what the model holds"
    reply = next(e.text for e in events if isinstance(e, ReplyDone))
    assert "rome" in reply.lower()


def test_the_reply_model_waits_while_the_first_words_are_voiced(offline) -> None:
    """On two cores Piper took ~205 ms for the first four words while llama.cpp went on writing
    beside it, ~110 ms alone: the LLM waits between tokens until the first piece has audio (at
    most the token it was already computing gets out), then writes the rest of the reply."""
    import time

    from voicechat.llm.base import Message
    from voicechat.llm.local import LocalChat
    from voicechat.reply import ReplyPipeline

    s, _stt, llm, tts = offline
    writer = LocalChat(llm.model_path, temperature=0.0, max_tokens=40)  # the same loaded model, greedy
    marks: list[tuple[float, object]] = []

    async def run():
        pipeline = ReplyPipeline(1, writer, tts, 24000, lambda e: marks.append((time.perf_counter(), e)))
        return await pipeline.run(
            [
                Message("system", s.prompt()),
                Message("user", "Tell me a long story about a brave knight, a dragon and a king."),
            ]
        )

    times = asyncio.run(run())
    assert times.first_sentence is not None and times.first_audio is not None
    deltas = [t for t, e in marks if isinstance(e, ReplyDelta)]
    while_voicing = [t for t in deltas if times.first_sentence < t < times.first_audio]
    after = [t for t in deltas if t > times.first_audio]
    assert len(after) >= 4, f"the reply was too short to tell: {times.text!r}"
    assert len(while_voicing) <= 1, f"{len(while_voicing)} tokens were written while the first piece was voiced"


def test_a_caption_of_the_words_so_far_is_read_into_the_model_before_the_pause(offline, make_speech) -> None:
    """Each live caption's words are read into the local model while the user is still talking,
    so at their pause the end-of-turn score and the reply read only the last words, not the line."""
    from voicechat.llm.base import Message
    from voicechat.llm.line_end import words_only
    from voicechat.llm.local import prompt_before_reply

    s, _stt, llm, _tts = offline
    question = "Could you please tell me the name of the tallest mountain in the whole world?"
    frames, rate = iter_wav_frames(make_speech(question, rate=16000))

    async def held(conv: Conversation, caption: str) -> tuple[list[int], list[int]]:
        """(what the model should hold for ``caption``, what it holds) once priming is done."""
        if conv._priming is not None:
            await conv._priming
        prompt = prompt_before_reply(
            [*conv.history.messages(s.prompt(), s.history_messages), Message("user", words_only(caption))], llm.language
        )
        with llm.using_model() as model:
            return (
                model.tokenize(prompt.encode("utf-8"), add_bos=True, special=True),
                list(model.input_ids[: model.n_tokens]),
            )

    async def run():
        conv = _conv(offline)
        captions, read_in = [], []
        for f in frames:  # in real time, as a microphone sends it (a caption during a pause the
            await conv.feed(f, rate)  # turn is prepared ahead on is not read in: take the others)
            await asyncio.sleep(len(f) / rate)
            for text in [e.text for e in conv.drain() if isinstance(e, PartialTranscript)]:
                captions.append(text)
                want, cached = await held(conv, text)
                if cached == want:
                    read_in.append(text)
        await conv.aclose()
        return captions, read_in

    captions, read_in = asyncio.run(run())
    assert len(captions) >= 2, captions
    assert read_in and len(read_in[0].split()) >= 2, f"no caption was read into the model: {captions}"


def test_a_caption_never_makes_the_model_reread_a_history_another_conversation_displaced(offline) -> None:
    """With several people talking at once, priming each caption would re-read each conversation's
    history into the one shared model every 800 ms: a caption only adds its words to a cache that
    still holds its conversation."""
    from voicechat.llm.base import Message
    from voicechat.warm_up import prime_next_turn

    s, _stt, llm, _tts = offline
    mine = [Message("system", s.prompt())] + [
        Message("user" if i % 2 == 0 else "assistant", f"Sentence number {i} about the weather in Paris today.")
        for i in range(8)
    ]

    async def cached_after(heard: str) -> list[int]:
        primed = prime_next_turn(llm, mine, heard)
        assert primed is not None
        await primed
        with llm.using_model() as model:
            return list(model.input_ids[: model.n_tokens])

    llm.warm_up([Message("system", "Another conversation."), Message("user", "Hello there, who are you?")])
    with llm.using_model() as model:
        theirs = list(model.input_ids[: model.n_tokens])
    assert asyncio.run(cached_after("What is the capital")) == theirs  # not re-read for a caption
    asyncio.run(cached_after(""))  # speech start: the history is read in
    with_words = asyncio.run(cached_after("What is the capital"))
    with llm.using_model() as model:
        words = model.tokenize(b" What is the capital", add_bos=False, special=True)
    assert with_words[-len(words) :] == words
