"""The live part of the page, redrawn twice a second by a fragment from one bridge snapshot.

Script thread only: the fragment reads :meth:`UiBridge.snapshot` (a frozen copy taken under the
bridge's lock) and never touches the engine's objects directly. User and model text is shown
with ``st.text`` (no Markdown, HTML or autolinking) and error messages with Markdown escaped —
never with ``unsafe_allow_html`` — so a transcript saying ``<img src=x onerror=...>``,
``[link](...)`` or a bare URL is displayed as those characters.

The fragment never contains ``webrtc_streamer`` (see :mod:`voicechat.streamlit.webrtc`): fragment runs do
not count as script runs, and the component must be rendered by every full run.
"""

from __future__ import annotations

import re
import statistics
from dataclasses import dataclass

import altair as alt
import pandas as pd
import streamlit as st

from voicechat.config import Settings
from voicechat.events import State, TurnMetrics
from voicechat.streamlit.browser_session import VoiceSession
from voicechat.streamlit.browser_stt import browser_stt
from voicechat.streamlit.keys import DEFAULT_KEYS, StreamerKeys
from voicechat.streamlit.recording_downloads import render_recording_downloads
from voicechat.streamlit.stats_log import write_stats
from voicechat.ui_state import Snapshot

LATENCY_COLUMNS = ("stt_ms", "llm_first_token_ms", "tts_first_audio_ms", "first_audio_ms")
_MD_SPECIAL = re.compile(r"([\\`*_{}\[\]()<>#+\-.!|~$:])")


@dataclass(frozen=True)
class LiveView:
    """What the live panel draws, and when it asks for a full run (see ``voice_chat``)."""

    keys: StreamerKeys = DEFAULT_KEYS
    transcript: bool = True  # transcript, stop/clear buttons, downloads
    status: bool = True  # listening / thinking / speaking lights
    metrics: bool = True  # latency medians, chart and table
    rerun_after: int | None = None  # finished lines the last full run saw; None: never rerun the app


def finished_lines(snap: Snapshot) -> int:
    return sum(not line.streaming for line in snap.lines)


def escape_markdown(text: str) -> str:
    """Backslash-escape everything Streamlit's Markdown would interpret (incl. ``$`` math and HTML)."""
    return _MD_SPECIAL.sub(r"\\\1", text).replace("\n", "  \n")


def status_lights(state: State, t: dict[str, str]) -> list[str]:
    """The three status lights (듣고 있음 / AI 생각 중 / 말하는 중), each always named: the lit one with
    its colour and in bold, the others in grey (an unlit light that said "Idle" could not be told apart)."""
    names = (
        (State.LISTENING, "🟢", t["listening"]),
        (State.THINKING, "🟡", t["thinking"]),
        (State.SPEAKING, "🔵", t["speaking"]),
    )
    return [f"{icon} **{name}**" if light == state else f"⚪ :gray[{name}]" for light, icon, name in names]


def light_state(state: State, *, webrtc_active: bool, engine_running: bool) -> State:
    """What the lights show: the engine listens only while the microphone is connected."""
    if not engine_running:
        return State.IDLE
    if state == State.IDLE:  # a fresh engine has not reported a state yet
        return State.LISTENING if webrtc_active else State.IDLE
    if state == State.LISTENING and not webrtc_active:
        return State.IDLE
    return state


def latency_frame(metrics: tuple[TurnMetrics, ...]) -> pd.DataFrame:
    """One row per completed turn, the four latency columns in ms (None → NaN)."""
    rows = [{"turn": m.turn, **{c: m.as_dict().get(c) for c in LATENCY_COLUMNS}} for m in metrics]
    return pd.DataFrame(rows, columns=["turn", *LATENCY_COLUMNS], dtype="float64")


def medians(metrics: tuple[TurnMetrics, ...]) -> dict[str, float | None]:
    out: dict[str, float | None] = {}
    for c in LATENCY_COLUMNS:
        values = [v for m in metrics if isinstance(v := m.as_dict().get(c), (int, float))]
        out[c] = round(statistics.median(values), 1) if values else None
    return out


def _render_transcript(snap: Snapshot, interim: str, t: dict[str, str]) -> None:
    """Chat bubbles; the words themselves go through ``st.text`` (no Markdown, no HTML, no autolinks)."""
    if not snap.lines and not interim:
        st.caption(t["empty"])
    for line in snap.lines:
        with st.chat_message("user" if line.role == "user" else "assistant"):
            who = t["you"] if line.role == "user" else t["assistant"]
            flag = f" · {t['interrupted']}" if line.interrupted else f" · {t['cut_off']}" if line.cut_off else ""
            st.caption(f"{who} · {line.at}{flag}")
            st.text(line.text + (" ▌" if line.streaming else ""))
    if interim:
        with st.chat_message("user"):
            st.caption(f"{t['interim']} …")
            st.text(interim)


def _render_latency(metrics: tuple[TurnMetrics, ...], t: dict[str, str], chart_key: str) -> None:
    st.subheader(t["latency"])
    if not metrics:
        st.caption(t["no_turns"])
        return
    med = medians(metrics)
    for col, name in zip(st.columns(len(LATENCY_COLUMNS)), LATENCY_COLUMNS, strict=True):
        value = med[name]
        col.metric(f"{name} ({t['median']})", "—" if value is None else f"{value:.0f}")
    df = latency_frame(metrics)
    if df[list(LATENCY_COLUMNS)].notna().any().any():
        with st.container(key=chart_key):
            st.altair_chart(latency_chart(df))
    st.dataframe(df, hide_index=True)


def latency_chart(df: pd.DataFrame) -> alt.LayerChart:
    """Lines with a point on every turn, each point labelled with its value: readable from turn 1,
    where a line alone draws nothing (it needs two points) and the chart was an empty box."""
    long = df.melt(id_vars="turn", value_vars=list(LATENCY_COLUMNS), var_name="stage", value_name="ms").dropna()
    base = alt.Chart(long).encode(
        x=alt.X("turn:Q", axis=alt.Axis(tickMinStep=1, format="d"), scale=alt.Scale(padding=24)),
        y=alt.Y("ms:Q", title="ms"),
        color=alt.Color("stage:N", sort=list(LATENCY_COLUMNS)),
    )
    line = base.mark_line(point=alt.OverlayMarkDef(size=80, filled=True))
    labels = base.mark_text(align="left", dx=7, dy=-7).encode(text=alt.Text("ms:Q", format=".0f"))
    return (line + labels).properties(height=260)


def _render_engine_status(session: VoiceSession, t: dict[str, str]) -> None:
    runner = session.runner
    if runner is None:
        if session.webrtc_starts:
            st.info(t["stopped"])
        return
    if runner.ready:
        return
    if not runner.alive:  # the factory raised: show its one-line error with the remedy
        try:
            runner.wait_ready(0)
        except Exception as exc:
            st.error(f"{t['load_failed']}: {escape_markdown(str(exc))}")
        return
    with st.status(t["loading"], state="running"):
        st.caption(t["loading"])


def _on_buttons(action: str, session_key: str) -> None:
    session: VoiceSession | None = st.session_state.get(session_key)
    if session is None:
        return
    if action == "stop":
        session.stop_speaking()
    else:
        session.clear()


def _browser_stt(session: VoiceSession, settings: Settings, t: dict[str, str], key: str) -> str:
    """Mount the Web Speech component when chosen; returns its interim text."""
    if settings.stt != "browser":
        return ""

    def on_final() -> None:
        value = st.session_state.get(key)
        final = getattr(value, "final", None) if value is not None else None
        if isinstance(final, dict) and str(final.get("text", "")).strip() and session.runner is not None:
            session.runner.submit_text(str(final["text"]))

    def on_error() -> None:
        value = st.session_state.get(key)
        error = getattr(value, "error", None) if value is not None else None
        if error:
            session.browser_stt_error = str(error)

    result = browser_stt(
        enabled=session.webrtc_active,
        language=settings.language,
        label=t["browser_listening"],
        key=key,
        on_final=on_final,
        on_error=on_error,
    )
    if session.browser_stt_error:
        st.rerun(scope="app")  # the full run rebuilds the engine with server STT and says why
    return str(getattr(result, "interim", "") or "")


@st.fragment(run_every=0.5)
def live_panel(session: VoiceSession, settings: Settings, t: dict[str, str], view: LiveView = LiveView()) -> None:
    """Everything that changes while you talk; reruns alone every 0.5 s (never the WebRTC component)."""
    keys = view.keys
    _render_engine_status(session, t)
    interim = _browser_stt(session, settings, t, keys.browser_stt)
    snap = session.bridge.snapshot()
    if view.rerun_after is not None and finished_lines(snap) != view.rerun_after:
        st.rerun(scope="app")  # a transcript or reply finished: the caller's script sees it in voice_chat's state
    if view.status:
        state = light_state(
            snap.state,
            webrtc_active=session.webrtc_active,
            engine_running=session.runner is not None and session.runner.ready,
        )
        with st.container(key=keys.widget("lights")):
            for col, light in zip(st.columns(3), status_lights(state, t), strict=True):
                col.markdown(light)
    if view.transcript:
        b1, b2, _ = st.columns([1, 1, 2])
        b1.button(
            f"🔇 {t['stop_speaking']}",
            key=keys.widget("stop_speaking"),
            on_click=_on_buttons,
            args=("stop", keys.session),
            width="stretch",
        )
        b2.button(
            f"🗑️ {t['clear']}",
            key=keys.widget("clear"),
            on_click=_on_buttons,
            args=("clear", keys.session),
            width="stretch",
        )
        _render_transcript(snap, interim or (snap.partial if session.webrtc_active else ""), t)
    for message in snap.errors[-3:]:
        st.warning(escape_markdown(message))
    if view.metrics:
        _render_latency(snap.metrics, t, keys.widget("latency_chart"))
    if view.transcript:
        history = session.history()
        d1, d2 = st.columns(2)
        d1.download_button(
            f"⬇️ {t['download_json']}",
            history.to_json(),
            file_name="voicechat-transcript.json",
            mime="application/json",
            key=keys.widget("dl_json"),
            on_click="ignore",
        )
        d2.download_button(
            f"⬇️ {t['download_md']}",
            history.to_markdown(title="voicechat"),
            file_name="voicechat-transcript.md",
            mime="text/markdown",
            key=keys.widget("dl_md"),
            on_click="ignore",
        )
        render_recording_downloads(session, settings, t, key=keys.widget)
    write_stats(session.id, session.stats())
