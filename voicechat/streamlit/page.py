"""The bundled dashboard: a title, a language choice and :func:`voicechat.streamlit.embed.voice_chat`.

It is a user of ``voice_chat`` like any other page (``examples/embed_streamlit.py`` is another):
the run-order and thread rules live there, not here. What the dashboard adds: the page config,
the Korean/English title, the conversation language, the settings sidebar and the latency chart.
``voicechat app`` and ``streamlit run streamlit_app.py`` both run :func:`main`.

Threads: Streamlit's script thread only.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import streamlit as st
from streamlit_webrtc.shutdown import SessionShutdownObserver

from voicechat.config import LANGUAGES
from voicechat.errors import ConfigError
from voicechat.streamlit.embed import base_settings, read_secrets, voice_chat
from voicechat.streamlit.i18n import labels
from voicechat.streamlit.keys import DEFAULT_KEYS
from voicechat.streamlit.live import escape_markdown
from voicechat.streamlit.webrtc import render_streamer


def main(
    streamer: Callable[..., Any] = render_streamer,
    shutdown_observer: Callable[[Callable[[], None]], object] = SessionShutdownObserver,
) -> None:
    """The whole page.

    ``streamer`` and ``shutdown_observer`` are the two places that need a live Streamlit server
    (streamlit-webrtc reads the server's session manager); Streamlit's ``AppTest`` has none, so
    the page tests pass stand-ins there and the browser test covers the real ones.
    """
    st.set_page_config(page_title="voicechat", page_icon="🎙️", layout="centered")
    base, base_error = base_settings(read_secrets())
    language_key = DEFAULT_KEYS.widget("language")
    language = st.session_state.get(language_key, base.language)
    t = labels(language)

    st.title(t["title"])
    st.caption(t["subtitle"])
    codes = list(LANGUAGES)
    st.selectbox(
        t["language"],
        codes,
        index=codes.index(base.language),
        key=language_key,
        format_func=lambda c: LANGUAGES.get(c, c),
    )
    if base_error:
        st.error(escape_markdown(base_error))
    settings = base
    try:
        settings = base.replace(language=language)
    except ConfigError as exc:
        st.error(escape_markdown(str(exc)))
    voice_chat(
        settings,
        sidebar=True,
        show_metrics=True,
        rerun_on_reply=False,
        streamer=streamer,
        shutdown_observer=shutdown_observer,
    )
