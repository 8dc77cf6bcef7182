"""The page's recording downloads: the conversation's audio and every reply, built only when asked.

Shown only when recording is on (``VOICECHAT_RECORD_AUDIO=1`` or the sidebar switch). The live panel
reruns every 0.5 s, so the files are not made on every run: "Prepare audio downloads" builds them
once (in the button's callback, on the script thread) and keeps the bytes in this session's state,
in memory, for the two download buttons — never on disk. Pressing it again takes the latest audio.
:meth:`VoiceSession.recording` copies the segment lists on the engine thread (cheap).
"""

from __future__ import annotations

from collections.abc import Callable

import streamlit as st

from voicechat.config import Settings
from voicechat.streamlit.browser_session import VoiceSession


def render_recording_downloads(
    session: VoiceSession, settings: Settings, t: dict[str, str], key: Callable[[str], str]
) -> None:
    """The prepare button, then (once prepared) a stereo WAV and a ZIP of each side and each reply."""
    ready_key = key("audio_ready")
    if not settings.record_audio:
        st.session_state.pop(ready_key, None)
        return
    rec = session.recording()
    if rec is None or rec.duration_s <= 0:
        st.session_state.pop(ready_key, None)  # nothing recorded, or the conversation was cleared
        st.caption(t["recording_empty"])
        return
    st.button(f"🎙️ {t['prepare_audio']}", key=key("prepare_audio"), on_click=_prepare, args=(session, ready_key))
    ready = st.session_state.get(ready_key)
    if ready is not None:
        wav, archive = ready
        a1, a2 = st.columns(2)
        a1.download_button(
            f"⬇️ {t['download_audio']}",
            wav,
            file_name="voicechat-conversation.wav",
            mime="audio/wav",
            key=key("dl_audio"),
            on_click="ignore",
        )
        a2.download_button(
            f"⬇️ {t['download_replies']}",
            archive,
            file_name="voicechat-audio.zip",
            mime="application/zip",
            key=key("dl_audio_zip"),
            on_click="ignore",
        )
    note = t["recording_full"] if rec.full else t["recording_note"]
    st.caption(note.format(seconds=round(rec.duration_s), limit=round(settings.record_max_s / 60)))


def _prepare(session: VoiceSession, ready_key: str) -> None:
    rec = session.recording()
    if rec is not None:
        st.session_state[ready_key] = (rec.conversation_wav(), rec.zip_bytes())
