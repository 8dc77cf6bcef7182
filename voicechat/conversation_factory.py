"""The one place a :class:`~voicechat.engine.Conversation` is built: Settings in, a conversation out.

The engine takes built parts only; this module turns the settings' choices (``auto`` included)
into them through :mod:`voicechat.backends`. Every surface, the CLI and the benchmarks build
here, so a conversation is wired the same way wherever it runs. A benchmark that compares
settings on shared models passes the models it already loaded; anything left ``"auto"`` is
built from the settings.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Literal

from voicechat.config import Settings
from voicechat.engine import Conversation
from voicechat.events import Event
from voicechat.history import Entry
from voicechat.llm.base import ChatModel
from voicechat.stt.base import SpeechToText
from voicechat.tts.base import TextToSpeech
from voicechat.turn_policy import LineEndScoring
from voicechat.vad import VoiceActivityDetector

Auto = Literal["auto"]


def create_conversation(
    settings: Settings | None = None,
    *,
    stt: SpeechToText | Auto | None = "auto",
    llm: ChatModel | Auto = "auto",
    tts: TextToSpeech | Auto | None = "auto",
    interim_stt: SpeechToText | Auto | None = "auto",
    scorer: LineEndScoring | Auto | None = "auto",
    vad: VoiceActivityDetector | None = None,
    output_rate: int = 48_000,
    listener: Callable[[Event], None] | None = None,
    half_duplex: bool = False,
    history: Iterable[Entry] = (),
) -> Conversation:
    """A conversation on the backends ``settings`` choose (OpenAI with a key, offline without).

    ``stt``/``tts`` ``None``: no server transcription (the page's recogniser sends text) or no
    speech (a speech-to-speech model speaks itself). ``interim_stt`` and ``scorer`` ``auto``: the
    live-caption STT and the text end-of-turn signal the settings call for (see
    :func:`~voicechat.backends.make_interim_stt`, :func:`~voicechat.backends.make_line_end_scorer`).
    ``history``: earlier turns the conversation goes on from (a restarted engine).
    """
    from voicechat.backends import make_interim_stt, make_line_end_scorer, make_llm, make_stt, make_tts

    s = settings or Settings.load()
    stt_ = make_stt(s) if stt == "auto" else stt
    llm_ = make_llm(s) if llm == "auto" else llm
    tts_ = make_tts(s) if tts == "auto" else tts
    conv = Conversation(
        stt_,
        llm_,
        tts_,
        settings=s,
        vad=vad,
        output_rate=output_rate,
        listener=listener,
        interim_stt=make_interim_stt(s, stt_) if interim_stt == "auto" else interim_stt,
        scorer=make_line_end_scorer(s, llm_) if scorer == "auto" else scorer,
        half_duplex=half_duplex,
    )
    for entry in history:
        conv.history.add(entry)
    return conv


def conversation_factory(
    settings: Settings | None = None,
    *,
    stt: SpeechToText | Auto | None = "auto",
    output_rate: int = 48_000,
    half_duplex: bool = False,
    history: Iterable[Entry] = (),
) -> Callable[[Callable[[Event], None]], Conversation]:
    """What :class:`~voicechat.conversation_thread.ConversationThread` takes: a builder it calls on
    the engine thread with its listener, so the models load there and not on the caller's thread."""
    kept = list(history)

    def factory(listener: Callable[[Event], None]) -> Conversation:
        return create_conversation(
            settings, stt=stt, output_rate=output_rate, listener=listener, half_duplex=half_duplex, history=kept
        )

    return factory
