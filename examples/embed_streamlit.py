"""A page of your own with voice in it: ``streamlit run examples/embed_streamlit.py``.

The voice chat sits in the right column; the left column is the page's own business (a small
trip budget with a form and a chart) and also shows what was said last, read from the state
``voice_chat()`` returns. The one rule: call ``voice_chat()`` on every run, outside any
``if`` and any ``st.fragment``.
"""

import pandas as pd
import streamlit as st

from voicechat.streamlit import voice_chat

st.set_page_config(page_title="Trip planner", page_icon="🧭", layout="wide")
st.title("🧭 Trip planner")
plan, talk = st.columns([3, 2], gap="large")

with talk:
    st.subheader("Ask by voice")
    chat = voice_chat()  # on every run; offline models, or OpenAI when OPENAI_API_KEY is set

with plan:
    with st.form("budget"):
        nights = st.slider("Nights", 1, 14, 4)
        per_night = st.number_input("Hotel per night (€)", 20, 1000, 120)
        st.form_submit_button("Update budget")
    costs = pd.DataFrame({"item": ["hotel", "food", "travel"], "€": [nights * per_night, nights * 45, 180]})
    st.bar_chart(costs, x="item", y="€")

    with st.container(border=True, key="last_exchange"):
        st.markdown("**Last exchange**")
        if chat.last_transcript:
            st.text(f"You: {chat.last_transcript}")  # st.text: user and model words are never Markdown
        if chat.last_reply:
            st.text(f"Assistant: {chat.last_reply}")
        st.caption(
            f"{len(chat.history.entries)} messages · {chat.state.value}"
            + (" · microphone connected" if chat.connected else "")
        )
