"""Settings: arguments > environment > ``.env`` > defaults, and which backends are live and why.

The API keys are held in fields excluded from ``repr`` and from :meth:`Settings.public_dict`,
so printing or logging settings never shows them.

Each model stage may talk to its own OpenAI-format server (``VOICECHAT_STT_BASE_URL`` …): Ollama
and vLLM serve chat but not ``/v1/audio/*``, so one ``OPENAI_BASE_URL`` cannot describe a
deployment that puts each stage on the engine made for it. See :meth:`Settings.endpoint`.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from dotenv import dotenv_values

from voicechat.errors import ConfigError
from voicechat.turn_policy import END_OF_TURN_MODES, EndOfTurnMode

LANGUAGES: dict[str, str] = {
    "ko-KR": "한국어",
    "en-US": "English (US)",
    "ja-JP": "日本語",
    "zh-CN": "中文",
}

# The system prompt for each conversation language: one short instruction, said in that language.
SYSTEM_PROMPTS: dict[str, str] = {
    "ko-KR": "당신은 친근하고 도움이 되는 AI 어시스턴트입니다. 간결하고 자연스럽게 대답해주세요.",
    "en-US": "You are a friendly and helpful AI assistant. Answer briefly and naturally.",
    "ja-JP": "あなたは親切で役に立つAIアシスタントです。簡潔で自然に答えてください。",
    "zh-CN": "你是一个友好且乐于助人的AI助手。请简洁自然地回答。",
}

BACKEND_CHOICES = ("auto", "local", "openai")
STT_CHOICES = (*BACKEND_CHOICES, "browser")
# "realtime": one speech-to-speech model hears the user and speaks the reply (voicechat.realtime).
LLM_CHOICES = (*BACKEND_CHOICES, "realtime")
REALTIME_TURNS = ("local", "server_vad", "semantic_vad")
# Who writes the live transcript while the user speaks: see make_interim_stt in backends.py.
INTERIM_STT_CHOICES = ("auto", "stt", "local", "off")
LINE_END_SCORERS = ("local", "server")  # who scores the words: a Gemma in this process, or a model server
OPENAI_VOICES = ("alloy", "echo", "fable", "onyx", "nova", "shimmer")
STAGES = ("stt", "llm", "tts")
# Servers a request can go to: the three stages, and a scoring server of the end of turn's own
# (VOICECHAT_LINE_END_BASE_URL/_API_KEY; see voicechat.llm.served_line_end).
ENDPOINTS = (*STAGES, "line_end")
OPENAI_DEFAULT_BASE_URL = "https://api.openai.com/v1"


def _env(name: str) -> dict[str, Any]:
    return {"env": name}


def display_url(url: str) -> str:
    """``url`` safe to show: any ``user:password@`` and query string (where keys hide) removed."""
    parts = urlsplit(url)
    if parts.username or parts.password:
        host = parts.hostname or ""
        parts = parts._replace(netloc=f"{host}:{parts.port}" if parts.port else host)
    return urlunsplit(parts._replace(query="", fragment=""))


def _same_server(a: str | None, b: str | None) -> bool:
    def norm(url: str | None) -> str:
        return (url or OPENAI_DEFAULT_BASE_URL).strip().rstrip("/").lower()

    return norm(a) == norm(b)


@dataclass(frozen=True)
class Endpoint:
    """Where one stage's OpenAI-format requests go, with which key, and which variable said so.

    ``base_url`` None means OpenAI's own API. ``url_var``/``key_var`` name the setting the
    value came from ("" when none did), so messages can tell the user which one to fix.
    """

    stage: str
    base_url: str | None
    api_key: str | None = field(repr=False)
    url_var: str
    key_var: str

    @property
    def shown_url(self) -> str:
        return display_url(self.base_url or OPENAI_DEFAULT_BASE_URL)

    def describe(self) -> str:
        """One line without the key, e.g. ``http://10.0.0.5:8000/v1 (VOICECHAT_LLM_BASE_URL), key not set``."""
        where = f"{self.shown_url} ({self.url_var or 'default'})"
        return f"{where}, key {f'set ({self.key_var})' if self.api_key else 'not set'}"


@dataclass(frozen=True)
class TurnSettings:
    """When the user's turn begins and ends: the VAD, barge-in and the end-of-turn waits.

    Grouped apart from the backends' settings because the engine hands them, as one, to its
    segmenter and its turn policy. The environment names are the flat ``VOICECHAT_*`` ones, and
    :meth:`Settings.load`/:meth:`Settings.replace` take these fields by their own names.
    """

    vad: str = field(default="silero", metadata=_env("VOICECHAT_VAD"))
    vad_threshold: float = field(default=0.5, metadata=_env("VOICECHAT_VAD_THRESHOLD"))
    min_speech_ms: int = field(default=200, metadata=_env("VOICECHAT_MIN_SPEECH_MS"))
    barge_in_ms: int = field(default=200, metadata=_env("VOICECHAT_BARGE_IN_MS"))
    # Two 32 ms VAD windows: the turn starts ~32 ms sooner than at 90 ms, for about one more
    # speculative start per four utterances that speech resumes after (docs/benchmarks.md).
    speculative_pause_ms: int = field(default=64, metadata=_env("VOICECHAT_SPECULATIVE_PAUSE_MS"))
    end_of_turn_ms: int = field(default=500, metadata=_env("VOICECHAT_END_OF_TURN_MS"))
    end_of_turn: EndOfTurnMode = field(default="semantic", metadata=_env("VOICECHAT_END_OF_TURN"))
    end_of_turn_early_ms: int = field(default=200, metadata=_env("VOICECHAT_END_OF_TURN_EARLY_MS"))
    end_of_turn_max_ms: int = field(default=1600, metadata=_env("VOICECHAT_END_OF_TURN_MAX_MS"))
    max_utterance_s: float = field(default=30.0, metadata=_env("VOICECHAT_MAX_UTTERANCE_S"))

    def validate(self) -> None:
        if self.vad not in ("silero", "webrtc"):
            raise ConfigError(f"vad {self.vad!r} is not silero or webrtc", "set VOICECHAT_VAD")
        if self.end_of_turn not in END_OF_TURN_MODES:
            raise ConfigError(
                f"end_of_turn {self.end_of_turn!r} is not semantic or silence",
                "set VOICECHAT_END_OF_TURN to semantic (default) or silence",
            )
        if min(self.end_of_turn_early_ms, self.end_of_turn_ms, self.end_of_turn_max_ms) <= 0:
            raise ConfigError(
                "end-of-turn waits must be positive (ms)",
                "fix VOICECHAT_END_OF_TURN_EARLY_MS, VOICECHAT_END_OF_TURN_MS or VOICECHAT_END_OF_TURN_MAX_MS",
            )
        if not 0.0 < self.vad_threshold < 1.0:
            raise ConfigError("vad_threshold must be between 0 and 1", "set VOICECHAT_VAD_THRESHOLD")


TURN_FIELDS = frozenset(f.name for f in fields(TurnSettings))


@dataclass
class Settings:
    """Everything a conversation needs to know; one instance per session."""

    stt: str = field(default="auto", metadata=_env("VOICECHAT_STT"))
    llm: str = field(default="auto", metadata=_env("VOICECHAT_LLM"))
    tts: str = field(default="auto", metadata=_env("VOICECHAT_TTS"))
    language: str = field(default="en-US", metadata=_env("VOICECHAT_LANGUAGE"))

    openai_api_key: str | None = field(default=None, repr=False, metadata=_env("OPENAI_API_KEY"))
    openai_base_url: str | None = field(default=None, metadata=_env("OPENAI_BASE_URL"))
    # One server per stage; each falls back to OPENAI_BASE_URL (see endpoint()).
    stt_base_url: str | None = field(default=None, metadata=_env("VOICECHAT_STT_BASE_URL"))
    llm_base_url: str | None = field(default=None, metadata=_env("VOICECHAT_LLM_BASE_URL"))
    tts_base_url: str | None = field(default=None, metadata=_env("VOICECHAT_TTS_BASE_URL"))
    stt_api_key: str | None = field(default=None, repr=False, metadata=_env("VOICECHAT_STT_API_KEY"))
    llm_api_key: str | None = field(default=None, repr=False, metadata=_env("VOICECHAT_LLM_API_KEY"))
    tts_api_key: str | None = field(default=None, repr=False, metadata=_env("VOICECHAT_TTS_API_KEY"))
    openai_stt_model: str = field(default="whisper-1", metadata=_env("VOICECHAT_OPENAI_STT_MODEL"))
    openai_llm_model: str = field(default="gpt-4o-mini", metadata=_env("VOICECHAT_OPENAI_LLM_MODEL"))
    openai_tts_model: str = field(default="tts-1", metadata=_env("VOICECHAT_OPENAI_TTS_MODEL"))
    openai_voice: str = field(default="alloy", metadata=_env("VOICECHAT_OPENAI_VOICE"))
    # The speech-to-speech model for VOICECHAT_LLM=realtime, on the LLM stage's server and key.
    realtime_model: str = field(default="gpt-realtime", metadata=_env("VOICECHAT_REALTIME_MODEL"))
    # Who ends a realtime turn: voicechat's VAD + end of turn ("local"), or the server's detector.
    realtime_turns: str = field(default="local", metadata=_env("VOICECHAT_REALTIME_TURNS"))
    tts_speed: float = field(default=1.2, metadata=_env("VOICECHAT_TTS_SPEED"))
    request_timeout_s: float = field(default=30.0, metadata=_env("VOICECHAT_REQUEST_TIMEOUT_S"))
    max_retries: int = field(default=3, metadata=_env("VOICECHAT_MAX_RETRIES"))

    local_stt_model: str | None = field(default=None, metadata=_env("VOICECHAT_LOCAL_STT_MODEL"))
    local_llm_model: str | None = field(default=None, metadata=_env("VOICECHAT_LOCAL_LLM_MODEL"))
    piper_voice: str | None = field(default=None, metadata=_env("VOICECHAT_PIPER_VOICE"))
    llm_threads: int = field(default=0, metadata=_env("VOICECHAT_LLM_THREADS"))
    # Where the semantic end of turn is scored (see make_line_end_scorer): "server" asks the LLM stage's
    # server, or a scoring server of its own when VOICECHAT_LINE_END_BASE_URL is set.
    line_end_scorer: str = field(default="local", metadata=_env("VOICECHAT_LINE_END_SCORER"))
    line_end_base_url: str | None = field(default=None, metadata=_env("VOICECHAT_LINE_END_BASE_URL"))
    line_end_api_key: str | None = field(default=None, repr=False, metadata=_env("VOICECHAT_LINE_END_API_KEY"))
    line_end_model: str | None = field(default=None, metadata=_env("VOICECHAT_LINE_END_MODEL"))
    # A served scorer may read each reply while the user speaks: ~170 ms less wait at the pause on a
    # scoring server with headroom, for a third more CPU per call (docs/per-call-cost.md). Off: a
    # deployment that serves the score does so to hold more calls per core.
    line_end_prime: bool = field(default=False, metadata=_env("VOICECHAT_LINE_END_PRIME"))

    system_prompt: str | None = field(default=None, metadata=_env("VOICECHAT_SYSTEM_PROMPT"))
    max_tokens: int = field(default=50, metadata=_env("VOICECHAT_MAX_TOKENS"))
    temperature: float = field(default=0.3, metadata=_env("VOICECHAT_TEMPERATURE"))
    history_messages: int = field(default=8, metadata=_env("VOICECHAT_HISTORY_MESSAGES"))

    turn: TurnSettings = field(default_factory=TurnSettings, metadata={"env": ""})  # loaded field by field
    partial_interval_ms: int = field(default=800, metadata=_env("VOICECHAT_PARTIAL_INTERVAL_MS"))
    interim_stt: str = field(default="auto", metadata=_env("VOICECHAT_INTERIM_STT"))
    max_audio_bytes: int = field(default=10 * 1024 * 1024, metadata=_env("VOICECHAT_MAX_AUDIO_BYTES"))
    record_audio: bool = field(default=False, metadata=_env("VOICECHAT_RECORD_AUDIO"))
    record_max_s: float = field(default=600.0, metadata=_env("VOICECHAT_RECORD_MAX_S"))

    ice_servers: str | None = field(default=None, metadata=_env("VOICECHAT_ICE_SERVERS"))
    # Live voice connections one server process accepts (the Streamlit app); 0 = no limit.
    max_sessions: int = field(default=20, metadata=_env("VOICECHAT_MAX_SESSIONS"))

    # Set only on the per-stage view an OpenAI backend holds (for_stage()); not a user setting.
    stage: str | None = field(default=None, metadata={"env": ""})

    @classmethod
    def load(
        cls,
        overrides: Mapping[str, Any] | None = None,
        *,
        environ: Mapping[str, str] | None = None,
        dotenv_path: str | Path | None = ".env",
    ) -> Settings:
        """Build settings: ``overrides`` (arguments) win over ``environ``, which wins over ``.env``.

        ``None`` values in ``overrides`` mean "not given" so CLI flags left unset fall through.
        """
        env = os.environ if environ is None else environ
        file_values: Mapping[str, str | None] = {}
        if dotenv_path is not None and Path(dotenv_path).is_file():
            file_values = dotenv_values(dotenv_path)
        given = {k: v for k, v in (overrides or {}).items() if v is not None}
        settable = [f for f in (*fields(cls), *fields(TurnSettings)) if f.metadata["env"]]
        unknown = set(given) - {f.name for f in settable}
        if unknown:
            raise ConfigError(f"unknown setting(s): {', '.join(sorted(unknown))}")
        values: dict[str, Any] = {}
        for f in settable:
            name = f.metadata["env"]
            if f.name in given:
                raw: Any = given[f.name]
            elif env.get(name) not in (None, ""):
                raw = env[name]
            elif file_values.get(name) not in (None, ""):
                raw = file_values[name]
            else:
                continue
            values[f.name] = _coerce(f, raw)
        turn = TurnSettings(**{k: values.pop(k) for k in TURN_FIELDS & set(values)})
        settings = cls(**values, turn=turn)
        settings.validate()
        return settings

    def validate(self) -> None:
        for kind, choices in (("stt", STT_CHOICES), ("llm", LLM_CHOICES), ("tts", BACKEND_CHOICES)):
            value = getattr(self, kind)
            if value not in choices:
                raise ConfigError(
                    f"{kind} backend {value!r} is not one of {', '.join(choices)}",
                    f"set VOICECHAT_{kind.upper()} or --{kind} to one of them",
                )
        if self.language not in LANGUAGES:
            raise ConfigError(
                f"language {self.language!r} is not supported",
                f"use one of {', '.join(LANGUAGES)} (VOICECHAT_LANGUAGE)",
            )
        if self.interim_stt not in INTERIM_STT_CHOICES:
            raise ConfigError(
                f"interim_stt {self.interim_stt!r} is not one of {', '.join(INTERIM_STT_CHOICES)}",
                "set VOICECHAT_INTERIM_STT (auto: never pay a provider for the live transcript)",
            )
        if self.max_sessions < 0:
            raise ConfigError(
                f"max_sessions {self.max_sessions} is negative", "set VOICECHAT_MAX_SESSIONS to 0 (no limit) or more"
            )
        if self.line_end_scorer not in LINE_END_SCORERS:
            raise ConfigError(
                f"line_end_scorer {self.line_end_scorer!r} is not one of {', '.join(LINE_END_SCORERS)}",
                "set VOICECHAT_LINE_END_SCORER (server: the LLM stage's server answers /v1/completions with logprobs)",
            )
        if self.realtime_turns not in REALTIME_TURNS:
            raise ConfigError(
                f"realtime_turns {self.realtime_turns!r} is not one of {', '.join(REALTIME_TURNS)}",
                "set VOICECHAT_REALTIME_TURNS (local: voicechat decides when the user has finished)",
            )
        self.turn.validate()
        if not self.record_max_s > 0:
            raise ConfigError("record_max_s must be above 0 seconds", "set VOICECHAT_RECORD_MAX_S (default 600)")

    def replace(self, **changes: Any) -> Settings:
        """A copy with ``changes``; the turn settings are named by their own fields (``end_of_turn=``)."""
        turn = {k: changes.pop(k) for k in TURN_FIELDS & set(changes)}
        if turn:
            changes["turn"] = dataclasses.replace(changes.get("turn", self.turn), **turn)
        new = dataclasses.replace(self, **changes)
        new.validate()
        return new

    @property
    def has_openai(self) -> bool:
        """An OpenAI-compatible server is usable: a key, or a custom base_url (Ollama needs none)."""
        return bool(self.openai_api_key) or bool(self.openai_base_url)

    def endpoint(self, kind: str) -> Endpoint:
        """The server and key for stage ``kind``: its own ``VOICECHAT_<KIND>_*``, else ``OPENAI_*``.

        ``OPENAI_API_KEY`` is sent only to the server it belongs to (``OPENAI_BASE_URL``, or
        OpenAI's API when that is unset): a stage pointed at another server gets its own
        ``VOICECHAT_<KIND>_API_KEY`` or no key, so an OpenAI key never reaches, say, a vLLM box.
        """
        if kind not in ENDPOINTS:
            raise ValueError(f"stage must be one of {', '.join(ENDPOINTS)}, not {kind!r}")
        upper = kind.upper()
        own_url: str | None = getattr(self, f"{kind}_base_url")
        own_key: str | None = getattr(self, f"{kind}_api_key")
        url: str | None
        key: str | None
        if own_url:
            url, url_var = own_url, f"VOICECHAT_{upper}_BASE_URL"
        else:
            url, url_var = self.openai_base_url, ("OPENAI_BASE_URL" if self.openai_base_url else "")
        if own_key:
            key, key_var = own_key, f"VOICECHAT_{upper}_API_KEY"
        elif self.openai_api_key and _same_server(url, self.openai_base_url):
            key, key_var = self.openai_api_key, "OPENAI_API_KEY"
        else:
            key, key_var = None, ""
        return Endpoint(kind, url, key, url_var, key_var)

    def for_stage(self, kind: str) -> Settings:
        """These settings with ``openai_base_url``/``openai_api_key`` resolved for one stage.

        An OpenAI backend holds this view, so its client, error messages and redaction all see
        the one server and key that stage talks to. ``endpoint(kind)`` of the view is unchanged.
        """
        ep = self.endpoint(kind)
        return self.replace(openai_base_url=ep.base_url, openai_api_key=ep.api_key, stage=kind)

    def backend(self, kind: str) -> str:
        """The concrete backend for ``kind`` ("stt", "llm", "tts"): resolves ``auto``.

        ``auto`` is OpenAI for a stage with its own server (``VOICECHAT_<KIND>_BASE_URL``) or a key
        for its server; otherwise the offline model.
        """
        value = str(getattr(self, kind))
        if value != "auto":
            return value
        if getattr(self, f"{kind}_base_url", None) or self.endpoint(kind).api_key:
            return "openai"
        return "local"

    def backend_reason(self, kind: str) -> str:
        """Why that backend was chosen, in words a user can act on."""
        value = str(getattr(self, kind))
        chosen = self.backend(kind)
        if value != "auto":
            return f"{chosen} (set explicitly)"
        if chosen == "openai":
            ep = self.endpoint(kind)
            why = ep.url_var if getattr(self, f"{kind}_base_url", None) else ep.key_var
            return f"openai ({why} is set)"
        return "local (no OPENAI_API_KEY set: offline default)"

    def stage_line(self, kind: str) -> str:
        """The stage's backend, why, and for OpenAI the server it calls (never the key)."""
        line = self.backend_reason(kind)
        if self.backend(kind) in ("openai", "realtime"):
            line += f" → {self.endpoint(kind).describe()}"
        return line

    def prompt(self) -> str:
        return self.system_prompt or SYSTEM_PROMPTS[self.language]

    def __repr__(self) -> str:
        # Keys reduced to "set or not", URLs without credentials: safe in logs and tracebacks.
        return f"Settings({', '.join(f'{k}={v!r}' for k, v in self.public_dict().items())})"

    def api_keys(self) -> list[str]:
        """Every key these settings hold, for redaction."""
        keys = (self.openai_api_key, self.stt_api_key, self.llm_api_key, self.tts_api_key, self.line_end_api_key)
        return [k for k in keys if k]

    def public_dict(self) -> dict[str, Any]:
        """Settings safe to show or export: each key is reduced to whether it is set."""
        out: dict[str, Any] = {}
        for f in fields(self):
            if f.name == "turn":  # shown flat, as the environment names them
                out.update(dataclasses.asdict(self.turn))
            elif f.name.endswith("_api_key"):
                out[f"{f.name}_set"] = bool(getattr(self, f.name))
            elif f.name.endswith("base_url") and getattr(self, f.name):
                out[f.name] = display_url(getattr(self, f.name))
            else:
                out[f.name] = getattr(self, f.name)
        return out


def _coerce(f: dataclasses.Field[Any], raw: Any) -> Any:
    kind = str(f.type)
    if kind.startswith("bool"):
        return _boolean(f, raw)
    try:
        if kind.startswith("int"):
            return int(raw)
        if kind.startswith("float"):
            return float(raw)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"setting {f.name} = {raw!r} is not a number", f"fix {f.metadata['env']}") from exc
    return raw if raw is None else str(raw)


def _boolean(f: dataclasses.Field[Any], raw: Any) -> bool:
    if isinstance(raw, bool):
        return raw
    word = str(raw).strip().lower()
    if word in ("1", "true", "yes", "on"):
        return True
    if word in ("0", "false", "no", "off"):
        return False
    raise ConfigError(f"setting {f.name} = {raw!r} is not on or off", f"set {f.metadata['env']} to 1 or 0")
