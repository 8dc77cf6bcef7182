"""The settings sidebar: backends, their settings, echo handling, and which backends are live and why.

Script thread only. Widget defaults come from ``Settings`` (arguments > environment > .env),
so a deployment's environment decides the starting point and the sidebar overrides it per
browser session. The OpenAI key is never a widget: it comes from ``st.secrets`` or the
environment and the page only says whether it is set.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

import streamlit as st

from voicechat.backends import check_backends
from voicechat.config import BACKEND_CHOICES, LLM_CHOICES, OPENAI_VOICES, REALTIME_TURNS, STT_CHOICES, Settings
from voicechat.streamlit.keys import DEFAULT_KEYS, StreamerKeys

# Settings the sidebar owns: a change restarts the engine with the new value.
SIDEBAR_FIELDS = (
    "stt",
    "llm",
    "tts",
    "openai_stt_model",
    "openai_llm_model",
    "openai_tts_model",
    "openai_voice",
    "tts_speed",
    "system_prompt",
    "vad_threshold",
)


def env_flag(name: str, default: bool) -> bool:
    """A boolean environment knob of the web app ("0", "false", "no", "off" are false)."""
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    return raw.strip().lower() not in ("0", "false", "no", "off")


@dataclass
class SidebarChoice:
    """What the user picked; ``overrides`` go to ``Settings.load``."""

    overrides: dict[str, Any] = field(default_factory=dict)
    echo_cancellation: bool = True
    half_duplex: bool = False


def _on_stt_change(session_key: str) -> None:
    # Picking the STT again (e.g. browser after a fallback) gives the browser recogniser another try.
    session = st.session_state.get(session_key)
    if session is not None:
        session.browser_stt_error = None


def render_sidebar(base: Settings, t: dict[str, str], keys: StreamerKeys = DEFAULT_KEYS) -> SidebarChoice:
    """Draw the sidebar and return the choices; ``base`` supplies every default."""
    choice = SidebarChoice()
    k = keys.widget
    o = choice.overrides
    names = {"auto": "auto", "local": "local (offline)", "openai": "openai", "browser": t["browser_stt"]}
    names["realtime"] = "realtime (speech to speech)"
    with st.sidebar:
        st.header(t["settings"])
        st.caption(t["key_set"] if base.openai_api_key else t["key_unset"])
        o["stt"] = st.selectbox(
            t["stt"],
            STT_CHOICES,
            index=STT_CHOICES.index(base.stt),
            key=k("stt"),
            format_func=lambda v: names.get(v, v),
            on_change=_on_stt_change,
            args=(keys.session,),
        )
        o["llm"] = st.selectbox(
            t["llm"],
            LLM_CHOICES,
            index=LLM_CHOICES.index(base.llm),
            key=k("llm"),
            format_func=lambda v: names.get(v, v),
        )
        o["tts"] = st.selectbox(
            t["tts"],
            BACKEND_CHOICES,
            index=BACKEND_CHOICES.index(base.tts),
            key=k("tts"),
            format_func=lambda v: names.get(v, v),
        )
        with st.expander(t["openai_models"]):
            o["openai_stt_model"] = st.text_input(t["stt_model"], base.openai_stt_model, key=k("stt_model"))
            o["openai_llm_model"] = st.text_input(t["llm_model"], base.openai_llm_model, key=k("llm_model"))
            o["openai_tts_model"] = st.text_input(t["tts_model"], base.openai_tts_model, key=k("tts_model"))
            o["realtime_model"] = st.text_input(t["realtime_model"], base.realtime_model, key=k("realtime_model"))
            o["realtime_turns"] = st.selectbox(
                t["realtime_turns"],
                REALTIME_TURNS,
                index=REALTIME_TURNS.index(base.realtime_turns),
                key=k("realtime_turns"),
                format_func=lambda v: t["realtime_turns_local"] if v == "local" else v,
                help=t["realtime_turns_help"],
            )
            voices = list(OPENAI_VOICES)
            o["openai_voice"] = st.selectbox(
                t["voice"],
                voices,
                index=voices.index(base.openai_voice) if base.openai_voice in voices else 0,
                key=k("voice"),
            )
        o["tts_speed"] = st.slider(t["speed"], 0.5, 2.0, float(base.tts_speed), 0.05, key=k("speed"))
        o["system_prompt"] = st.text_area(t["system_prompt"], base.system_prompt or "", key=k("prompt")) or None
        sensitivity = st.slider(
            t["vad"], 0.1, 0.9, round(1.0 - base.turn.vad_threshold, 2), 0.05, key=k("vad"), help=t["vad_help"]
        )
        o["vad_threshold"] = round(1.0 - sensitivity, 2)
        choice.echo_cancellation = st.toggle(
            t["echo"], value=env_flag("VOICECHAT_ECHO_CANCELLATION", True), key=k("echo"), help=t["echo_help"]
        )
        choice.half_duplex = st.toggle(
            t["half_duplex"],
            value=env_flag("VOICECHAT_HALF_DUPLEX", False),
            key=k("half_duplex"),
            help=t["half_duplex_help"],
        )
        # Off unless VOICECHAT_RECORD_AUDIO or this switch says so; switching restarts the engine (history kept).
        o["record_audio"] = st.toggle(
            t["record_audio"], value=base.record_audio, key=k("record"), help=t["record_help"]
        )
    return choice


def render_backend_status(settings: Settings, t: dict[str, str], ice_line: str) -> None:
    """Which backend each stage uses and why, and everything that could run here (no model is loaded)."""
    with st.sidebar:
        st.subheader(t["backends"])
        for kind in ("stt", "llm", "tts"):
            reason = (
                "browser (Web Speech API in the page)"
                if settings.stt == "browser" and kind == "stt"
                else settings.stage_line(kind)
            )  # an OpenAI-format stage names its server, never its key
            st.text(f"{kind.upper()}: {reason}")
        st.caption(t["backend_live"])
        st.dataframe(
            [
                {"kind": b.kind, "backend": b.name, "live": "✅" if b.usable else "❌", "why": b.reason}
                for b in check_backends(settings)
            ],
            hide_index=True,
        )
        st.caption(ice_line)
