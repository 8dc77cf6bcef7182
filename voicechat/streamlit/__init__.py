"""The Streamlit surface of voicechat: ``voice_chat()`` for your own page, and the bundled dashboard.

    from voicechat.streamlit import voice_chat
    chat = voice_chat()          # call it on every run
    st.write(chat.last_reply)

Everything that imports Streamlit or streamlit-webrtc lives here, never in ``voicechat/``,
so the engine stays importable (and testable) without a UI toolkit. ``voice_chat`` is imported
lazily, so the Streamlit-free modules here (the session, the keys) stay Streamlit-free too.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from voicechat.streamlit.embed import VoiceChatState, voice_chat

__all__ = ["VoiceChatState", "voice_chat"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from voicechat.streamlit import embed

        return getattr(embed, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
