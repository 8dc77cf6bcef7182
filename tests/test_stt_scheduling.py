"""The local transcriber's fast path: loops undone, and live captions never delay the final transcript."""

from __future__ import annotations

import threading
import time

import pytest

from tests.conftest import piper_pcm
from voicechat.stt.local import _cut_loop


def test_whisper_loops_are_cut_back_to_what_was_said() -> None:
    assert _cut_loop("What time is it? What time is it? What time is it? What time") == "What time is it?"
    assert _cut_loop("Tell me a joke Tell me a joke Tell me a") == "Tell me a joke"
    assert (
        _cut_loop("Turn on the lights and close the door. Turn on the lights and")
        == "Turn on the lights and close the door."
    )
    assert _cut_loop("Hi there. What time is it? What time is it? What") == "Hi there. What time is it?"
    # After a pause mid-sentence (the bench's paused-speech set), the end of the sentence loops.
    assert (
        _cut_loop(
            "So I was thinking that maybe we could Go to the beach tomorrow Go to the beach tomorrow "
            "Go to the beach tomorrow"
        )
        == "So I was thinking that maybe we could Go to the beach tomorrow"
    )
    assert (
        _cut_loop("I'd like to book a table for two people tonight, two people tonight, two")
        == "I'd like to book a table for two people tonight"
    )
    # Real speech stays as it is.
    for said in (
        "What is 2 plus 2?",
        "Hi there. What time is it?",
        "I said no, no. Not that one.",
        "Very very good.",
        "It was the best of times, it was the worst of times.",
        "I said go away, go away.",
        "Yes yes yes, I know.",
        "",
    ):
        assert _cut_loop(said) == said


@pytest.mark.slow
def test_a_live_caption_in_progress_never_makes_the_final_transcript_wait(piper_voice) -> None:
    """The user pauses while a caption of their speech is being decoded: the final one goes first.

    The model is held (as by a caption's encoder) while a caption and a final transcript both
    queue for it. Whichever gets it next, the caption must not decode ahead of the final one; it
    then shows the final transcript's text, so the live caption is not lost.
    """
    from voicechat.audio import InputConverter
    from voicechat.stt.local import LocalSTT

    pcm, rate = piper_pcm(piper_voice, "How many minutes are there in one hour?")
    speech = InputConverter().convert(pcm, rate)
    stt = LocalSTT()
    assert stt.transcribe_sync(speech) == "How many minutes are there in one hour?"
    heard_so_far = speech[: len(speech) * 6 // 10]  # the caption's audio: the question up to mid-way
    done: dict[str, str] = {}

    def run(name: str, fn, audio) -> None:
        done[name] = fn(audio, None)

    for _ in range(5):
        done.clear()
        stt._gate.lock.acquire()  # a caption is mid-encoder
        caption = threading.Thread(target=run, args=("caption", stt._interim_sync, heard_so_far))
        caption.start()
        time.sleep(0.02)  # the caption is queued first
        final = threading.Thread(target=run, args=("final", stt.transcribe_sync, speech))
        final.start()
        while not stt._gate.final_pending:
            time.sleep(0.001)
        stt._gate.lock.release()
        caption.join()
        final.join()
        assert done["final"] == "How many minutes are there in one hour?"
        # The caption did not decode its half-question ahead of the final: it shows the final's text.
        assert done["caption"] == done["final"]
    # With nobody waiting, a caption is a transcript of what it was given.
    caption_alone = stt._interim_sync(heard_so_far, None)
    assert caption_alone.startswith("How many") and "hour" not in caption_alone


@pytest.mark.slow
def test_words_after_a_pause_mid_sentence_are_transcribed() -> None:
    """The turn holds the user's pause; Whisper, in a window sized to the clip, used to stop at it
    ("Can you tell me about this?"). The bench's recordings, cut into turns as the engine cuts them."""
    import numpy as np

    from voicechat.audio import InputConverter, iter_wav_frames
    from voicechat.benchmark.paused_run import PAUSED_DIR
    from voicechat.end_of_turn import SilenceSegmenter, TurnConfig, TurnEnd
    from voicechat.stt.local import LocalSTT
    from voicechat.vad import SileroVAD

    stt = LocalSTT()
    heard = {}
    for name in ("p03_piper_22050.wav", "p10_espeak_22050.wav"):
        frames, rate = iter_wav_frames(PAUSED_DIR / name)
        conv, det = InputConverter(), SilenceSegmenter(SileroVAD(), TurnConfig(end_of_turn_ms=1600))
        turns = [
            e.audio
            for f in [*frames, *[np.zeros_like(frames[0])] * 120]
            for e in det.feed(conv.convert(f, rate))
            if isinstance(e, TurnEnd)
        ]
        assert len(turns) == 1  # one turn across the pause, as semantic end of turn holds it
        heard[name] = stt.transcribe_sync(turns[0]).lower()
    assert "history of rome" in heard["p03_piper_22050.wav"], heard
    assert "castle" in heard["p10_espeak_22050.wav"] and "dragon" in heard["p10_espeak_22050.wav"], heard
