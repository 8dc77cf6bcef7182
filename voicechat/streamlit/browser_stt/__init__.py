"""Browser speech recognition as a Streamlit custom component (v2, inline JS, no build step).

The Web Speech API runs in the page: interim text arrives as the ``interim`` state value, final
text as the ``final`` trigger (``{"text", "seq"}``), and a fatal recognition error (``network``
in headless or offline Chromium, ``not-allowed`` when the permission is denied, ``unsupported``
where there is no API, as in Firefox) as the ``error`` state value. The page then falls back to
server STT and says why.

Threads: mounted from Streamlit's script thread; the ``on_*_change`` callbacks run there too.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import streamlit as st

_JS = (Path(__file__).parent / "speech.js").read_text(encoding="utf-8")
_CSS = ".vc-stt-status { font-size: 0.85rem; opacity: 0.7; }"

_component = st.components.v2.component("voicechat_browser_stt", js=_JS, css=_CSS)


def browser_stt(
    *,
    enabled: bool,
    language: str,
    label: str,
    key: str = "voicechat-browser-stt",
    on_final: Callable[[], None] | None = None,
    on_error: Callable[[], None] | None = None,
) -> Any:
    """Mount the recogniser; returns the component result (``.interim``, ``.final``, ``.error``).

    ``on_final``/``on_error`` run as widget callbacks before the rerun; read the values from
    ``st.session_state[key]`` there.
    """
    return _component(
        key=key,
        data={"enabled": enabled, "lang": language, "label": label},
        default={"interim": "", "error": None},
        height="content",
        on_final_change=on_final or (lambda: None),
        on_error_change=on_error or (lambda: None),
        on_interim_change=lambda: None,
    )
