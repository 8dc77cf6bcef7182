"""The page: layout and wiring, run top to bottom by Streamlit on every full script run.

Order matters. Everything above :func:`voicechat.streamlit.webrtc.render_streamer` is plain widgets that
cannot fail; the streamer is rendered unconditionally on every full run with one fixed key;
everything after it is inside ``try`` so an error is shown on the page and the run still ends
normally, and the last statement tells the run-count barrier that this run completed.

Threads: this module runs on Streamlit's script thread. The per-session objects it creates
(:class:`voicechat.streamlit.browser_session.VoiceSession`) are where the aiortc, engine and shutdown threads meet.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Mapping
from typing import Any

import streamlit as st
from streamlit_webrtc.shutdown import SessionShutdownObserver

from voicechat.config import LANGUAGES, Settings
from voicechat.errors import ConfigError
from voicechat.streamlit import ice
from voicechat.streamlit.browser_session import VoiceSession
from voicechat.streamlit.i18n import labels, translations
from voicechat.streamlit.live import escape_markdown, live_panel
from voicechat.streamlit.sidebar import SidebarChoice, render_backend_status, render_sidebar
from voicechat.streamlit.testing import write_stats
from voicechat.streamlit.webrtc import RunCountBarrier, render_streamer

SESSION_KEY = "voicechat_session"
OBSERVER_KEY = "voicechat_session_observer"
BARRIER_KEY = "voicechat_run_barrier"

log = logging.getLogger(__name__)


def read_secrets() -> dict[str, Any]:
    """``st.secrets`` as a dict; empty when there is no secrets file (local runs, tests)."""
    try:
        return {k: v for k, v in st.secrets.items() if isinstance(v, str)}
    except Exception:  # FileNotFoundError / StreamlitSecretNotFoundError when no secrets.toml exists
        return {}


def get_session(shutdown_observer: Callable[[Callable[[], None]], object]) -> VoiceSession:
    """This browser session's VoiceSession, created once and closed when the session ends."""
    session = st.session_state.get(SESSION_KEY)
    if session is None:
        session = VoiceSession()
        st.session_state[SESSION_KEY] = session
        # SessionShutdownObserver polls the AppSession from its own thread and calls
        # session.close() when the browser session shuts down or leaves the page.
        st.session_state[OBSERVER_KEY] = shutdown_observer(session.close)
    return session


def get_barrier() -> RunCountBarrier:
    barrier = st.session_state.get(BARRIER_KEY)
    if barrier is None:
        barrier = RunCountBarrier()
        st.session_state[BARRIER_KEY] = barrier
    return barrier


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
        settings = base.replace(**{**choice.overrides, "language": st.session_state.get("vc_language",
                                                                                          base.language)})
    except ConfigError as exc:
        return base, str(exc)
    if settings.stt == "browser" and session.browser_stt_error:
        settings = settings.replace(stt="auto")
    return settings, None


def rtc_config(settings: Settings, secrets: Mapping[str, Any]) -> tuple[dict[str, Any] | None, str | None]:
    try:
        return ice.rtc_configuration(settings.ice_servers, secrets, os.environ), None
    except ConfigError as exc:
        return None, str(exc)


def main(streamer: Callable[..., Any] = render_streamer,
         shutdown_observer: Callable[[Callable[[], None]], object] = SessionShutdownObserver) -> None:
    """The whole page.

    ``streamer`` and ``shutdown_observer`` are the two places that need a live Streamlit server
    (streamlit-webrtc reads the server's session manager); Streamlit's ``AppTest`` has none, so
    the page tests pass stand-ins there and the browser test covers the real ones.
    """
    st.set_page_config(page_title="voicechat", page_icon="🎙️", layout="centered")
    session = get_session(shutdown_observer)
    barrier = get_barrier()
    secrets = read_secrets()
    base, base_error = base_settings(secrets)
    language = st.session_state.get("vc_language", base.language)
    t = labels(language)
    choice = render_sidebar(base, t)
    settings, settings_error = effective_settings(base, choice, session)
    rtc, ice_error = rtc_config(settings, secrets)

    st.title(t["title"])
    st.caption(t["subtitle"])
    codes = list(LANGUAGES)
    st.selectbox(t["language"], codes, index=codes.index(base.language), key="vc_language",
                 format_func=lambda c: LANGUAGES.get(c, c))

    # Rendered on EVERY full run, same key, never in a fragment or behind a condition.
    ctx = streamer(session, barrier, rtc_configuration=rtc, echo_cancellation=choice.echo_cancellation,
                   translations=translations(language))
    session.page_info.update(barrier.counters())
    try:
        for problem in (base_error, settings_error, ice_error):
            if problem:
                st.error(escape_markdown(problem))
        if choice.overrides.get("stt") == "browser" and session.browser_stt_error:
            st.warning(t["browser_fallback"].format(reason=escape_markdown(session.browser_stt_error)))
        active = bool(ctx.state.playing or ctx.state.signalling)
        if session.webrtc_changed(active):
            session.close_engine()  # the WebRTC connection stopped: no engine thread outlives it
            write_stats(session.id, session.stats(), event="webrtc-stopped")
        if active or session.runner is not None or not session.engine_started_once:
            session.ensure_engine(settings, half_duplex=choice.half_duplex)
        text = st.chat_input(t["type_message"], key="vc_text")
        if text:
            with st.spinner(t["loading"]):
                session.submit_text(text, settings, half_duplex=choice.half_duplex)
        live_panel(session, settings, t)
        render_backend_status(settings, t, ice.describe(rtc))
    except Exception as exc:  # shown, not raised: the run must end normally (see voicechat.streamlit.webrtc)
        log.exception("page error")
        st.exception(exc)
    barrier.run_completed()
