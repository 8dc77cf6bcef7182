"""``voice_chat()``: a live voice conversation you drop into your own Streamlit page.

The one rule for callers: **call it on every run** — at top level or inside ``with column:``,
never behind an ``if``, never inside ``st.fragment``. Everything else the page needs is done
here, in this order, so no caller can get it wrong:

1. one :class:`VoiceSession` (engine, transcript, audio outlet) per browser session and ``key``,
   kept in ``st.session_state``, closed by streamlit-webrtc's shutdown observer when the
   browser session ends;
2. the WebRTC streamer rendered unconditionally with a fixed key, behind the run-count
   barrier (see :mod:`voicechat.streamlit.webrtc` for the orphan-context trap it avoids);
3. everything after it inside ``try``, so an error is shown and the run still ends normally;
4. ``barrier.run_completed()`` as its last statement. Code of yours after the call may still
   end the run early (``st.stop()``, an exception, a rerun): the barrier then waits a few event
   loop iterations for a count that never moves and gives up — bounded, and never a reset.

Threads: this module runs on Streamlit's script thread only; the session object it creates is
where the aiortc, engine and shutdown threads meet (see :mod:`voicechat.streamlit.browser_session`).
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import streamlit as st
from dotenv import dotenv_values
from streamlit.runtime.runtime import Runtime
from streamlit.runtime.scriptrunner import get_script_run_ctx
from streamlit_webrtc.eventloop import get_global_event_loop
from streamlit_webrtc.shutdown import SessionShutdownObserver

from voicechat.config import Settings
from voicechat.errors import ConfigError
from voicechat.events import State, TurnMetrics
from voicechat.history import History
from voicechat.streamlit import ice, session_limit
from voicechat.streamlit.browser_session import VoiceSession
from voicechat.streamlit.i18n import labels, translations
from voicechat.streamlit.keys import StreamerKeys
from voicechat.streamlit.live import LiveView, escape_markdown, finished_lines, light_state, live_panel
from voicechat.streamlit.session_limit import frontend_wants_connection
from voicechat.streamlit.sidebar import SidebarChoice, render_backend_status, render_sidebar
from voicechat.streamlit.stats_log import write_stats
from voicechat.streamlit.webrtc import RunCountBarrier, render_streamer, settle_heap
from voicechat.ui_state import Snapshot

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class VoiceChatState:
    """The conversation as of this run, for your own layout.

    Your script sees a new one on every full run; with ``rerun_on_reply`` (the default) a full
    run follows each finished transcript and reply, so these fields keep up with the talk.
    """

    state: State  #: what the status lights show: IDLE, LISTENING, THINKING or SPEAKING
    connected: bool  #: the browser's microphone is connected (WebRTC is playing)
    ready: bool  #: the models are loaded and the engine runs
    history: History  #: every finished turn, user and assistant (export with ``to_json``/``to_markdown``)
    last_transcript: str | None  #: what the user said (or typed) last
    last_reply: str | None  #: the last finished reply
    metrics: tuple[TurnMetrics, ...]  #: per-turn latency figures
    errors: tuple[str, ...]  #: problems the engine reported (provider failures...), newest last
    settings: Settings  #: the settings the engine runs with (never shown: it holds the API key)


def read_secrets() -> dict[str, Any]:
    """``st.secrets`` as a dict; empty when there is no secrets file (local runs, tests)."""
    try:
        return {k: v for k, v in st.secrets.items() if isinstance(v, str)}
    except Exception:  # FileNotFoundError / StreamlitSecretNotFoundError when no secrets.toml exists
        return {}


def base_settings(secrets: Mapping[str, Any]) -> tuple[Settings, str | None]:
    """Settings from ``st.secrets`` (root-level strings, e.g. OPENAI_API_KEY), the environment and .env."""
    environ = {**os.environ, **secrets}
    try:
        return Settings.load(environ=environ), None
    except ConfigError as exc:
        return Settings(openai_api_key=environ.get("OPENAI_API_KEY") or None), str(exc)


def effective_settings(base: Settings, choice: SidebarChoice, session: VoiceSession) -> tuple[Settings, str | None]:
    """The sidebar's choices on top of ``base``; browser STT that failed falls back to server STT."""
    try:
        settings = base.replace(**choice.overrides)
    except ConfigError as exc:
        return base, str(exc)
    if settings.stt == "browser" and session.browser_stt_error:
        settings = settings.replace(stt="auto")
    return settings, None


def rtc_config(settings: Settings, secrets: Mapping[str, Any]) -> tuple[dict[str, Any] | None, str | None]:
    """The ICE servers, with TURN credentials from secrets, the environment or .env (like every setting)."""
    dotenv = {k: v for k, v in dotenv_values(".env").items() if v} if Path(".env").is_file() else {}
    try:
        return ice.rtc_configuration(settings.ice_servers, secrets, {**dotenv, **os.environ}), None
    except ConfigError as exc:
        return None, str(exc)


def admit_connection(session: VoiceSession, keys: StreamerKeys, limit: int) -> bool:
    """Before the streamer renders: False refuses this session's new connection (the session limit)."""
    wants = frontend_wants_connection(st.session_state.get(keys.streamer))
    admitted = session_limit.admit(session.id, wants, limit)
    if wants:
        session.refused_at_limit = None if admitted else limit
        if not admitted:
            # Here, before the run's first element: a rerun can interrupt a run only at an st call,
            # and one interrupted later than this once left a refused session's engine running.
            session.close_engine()
    return admitted


def aiortc_loop() -> asyncio.AbstractEventLoop | None:
    """The loop streamlit-webrtc runs aiortc on (Streamlit's server loop); ``None`` without a live
    server (AppTest's runtime is a stand-in whose "loop" is not one)."""
    loop = get_global_event_loop() if Runtime.exists() else None
    return loop if isinstance(loop, asyncio.AbstractEventLoop) and loop.is_running() else None


def get_session(keys: StreamerKeys, shutdown_observer: Callable[[Callable[[], None]], object]) -> VoiceSession:
    """This browser session's VoiceSession for ``keys``, created once and closed when the session ends."""
    session = st.session_state.get(keys.session)
    if session is None:
        # Engines on aiortc's loop, where the mic frames arrive (no thread hop per frame);
        # VOICECHAT_ENGINE_THREADS=1 gives each its own thread again.
        on_loop = os.environ.get("VOICECHAT_ENGINE_THREADS", "0") != "1"
        session = VoiceSession(media_loop=aiortc_loop if on_loop else None)
        st.session_state[keys.session] = session
        # SessionShutdownObserver polls the AppSession from its own thread and calls
        # session.close() when the browser session shuts down or leaves the page.
        st.session_state[keys.observer] = shutdown_observer(session.close)
    return session


def get_barrier(keys: StreamerKeys) -> RunCountBarrier:
    barrier = st.session_state.get(keys.barrier)
    if barrier is None:
        barrier = RunCountBarrier()
        st.session_state[keys.barrier] = barrier
    return barrier


def enable_webrtc_debug_log() -> None:
    """``VOICECHAT_WEBRTC_DEBUG=1``: print streamlit-webrtc's debug log (signalling, context resets)."""
    if not os.environ.get("VOICECHAT_WEBRTC_DEBUG"):
        return
    webrtc_log = logging.getLogger("streamlit_webrtc")
    if not webrtc_log.handlers:  # the script reruns; add the handler once per process
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        webrtc_log.addHandler(handler)
        webrtc_log.setLevel(logging.DEBUG)


def _refuse_fragment() -> None:
    ctx = get_script_run_ctx()
    if ctx is not None and ctx.fragment_ids_this_run:
        raise RuntimeError(
            "voice_chat() ran inside st.fragment: call it from the page's top level (or a column) "
            "on every full run, outside any fragment, or the microphone connection is reset."
        )


def _state(session: VoiceSession, settings: Settings, snap: Snapshot) -> VoiceChatState:
    runner = session.runner
    ready = bool(runner is not None and runner.ready)
    done = [line for line in snap.lines if not line.streaming]
    said = [line.text for line in done if line.role == "user"]
    replies = [line.text for line in done if line.role == "assistant"]
    return VoiceChatState(
        state=light_state(snap.state, webrtc_active=session.webrtc_active, engine_running=ready),
        connected=session.webrtc_active,
        ready=ready,
        history=session.history(),
        last_transcript=said[-1] if said else None,
        last_reply=replies[-1] if replies else None,
        metrics=snap.metrics,
        errors=snap.errors,
        settings=settings,
    )


def voice_chat(
    settings: Settings | None = None,
    *,
    key: str = "voicechat",
    show_transcript: bool = True,
    show_status: bool = True,
    show_metrics: bool = False,
    sidebar: bool = False,
    rerun_on_reply: bool = True,
    streamer: Callable[..., Any] = render_streamer,
    shutdown_observer: Callable[[Callable[[], None]], object] = SessionShutdownObserver,
) -> VoiceChatState:
    """Render a voice conversation here and return its state. **Call it on every run** (see the module doc).

    ``settings``: ``None`` reads them like the app does (``st.secrets``, the environment, .env);
    a changed value restarts the engine with it, keeping the conversation. ``key`` tells two voice
    chats on one page apart. ``show_*`` pick what is drawn: the transcript with its buttons and
    downloads, the listening/thinking/speaking lights, the latency chart. ``sidebar`` adds the
    dashboard's settings sidebar. ``rerun_on_reply`` runs your script again after each finished
    transcript and reply so the returned state is current. ``streamer`` and ``shutdown_observer``
    are for tests without a live Streamlit server (``AppTest``): they need one.
    """
    _refuse_fragment()
    enable_webrtc_debug_log()
    keys = StreamerKeys(key)
    session = get_session(keys, shutdown_observer)
    barrier = get_barrier(keys)
    secrets = read_secrets()
    base_error = None
    if settings is None:
        settings, base_error = base_settings(secrets)
    t = labels(settings.language)
    choice = render_sidebar(settings, t, keys) if sidebar else SidebarChoice()
    settings, settings_error = effective_settings(settings, choice, session)
    rtc, ice_error = rtc_config(settings, secrets)
    refuse = not admit_connection(session, keys, settings.max_sessions)

    # Rendered on EVERY full run, same key, never in a fragment or behind a condition.
    ctx = streamer(
        session,
        barrier,
        rtc_configuration=rtc,
        echo_cancellation=choice.echo_cancellation,
        translations=translations(settings.language),
        keys=keys,
        refuse=refuse,
    )
    session.page_info.update(barrier.counters())
    try:
        for problem in (base_error, settings_error, ice_error):
            if problem:
                st.error(escape_markdown(problem))
        if session.refused_at_limit is not None:
            st.error(t["session_limit"].format(limit=session.refused_at_limit))
        if choice.overrides.get("stt") == "browser" and session.browser_stt_error:
            st.warning(t["browser_fallback"].format(reason=escape_markdown(session.browser_stt_error)))
        active = bool(ctx.state.playing or ctx.state.signalling)
        if session.webrtc_changed(active):
            session.close_engine()  # the WebRTC connection stopped: no engine thread outlives it
            write_stats(session.id, session.stats(), event="webrtc-stopped")
        if refuse:
            session.close_engine()  # no frame of a refused connection reaches an engine
        elif active or session.runner is not None or not session.engine_started_once:
            session.ensure_engine(settings, half_duplex=choice.half_duplex)
        settle_heap(session)
        text = st.chat_input(t["type_message"], key=keys.widget("text"))
        if text:
            with st.spinner(t["loading"]):
                session.submit_text(text, settings, half_duplex=choice.half_duplex)
        snap = session.bridge.snapshot()
        state = _state(session, settings, snap)
        view = LiveView(
            keys=keys,
            transcript=show_transcript,
            status=show_status,
            metrics=show_metrics,
            rerun_after=finished_lines(snap) if rerun_on_reply else None,
        )
        live_panel(session, settings, t, view)
        if sidebar:
            render_backend_status(settings, t, ice.describe(rtc))
    except Exception as exc:  # shown, not raised: the run must end normally (see voicechat.streamlit.webrtc)
        log.exception("voice chat error")
        st.exception(exc)
        state = _state(session, settings, session.bridge.snapshot())
    barrier.run_completed()
    return state
