"""voicechat's Streamlit dashboard (the full WebRTC page arrives with its own issue)."""

import streamlit as st

from voicechat.backends import check_backends
from voicechat.config import Settings

st.set_page_config(page_title="voicechat", page_icon="🎙️")
st.title("voicechat")
settings = Settings.load()
for kind in ("stt", "llm", "tts"):
    st.write(f"**{kind.upper()}**: {settings.backend_reason(kind)}")
st.dataframe([{"kind": b.kind, "backend": b.name, "usable": b.usable, "why": b.reason}
              for b in check_backends(settings)])
