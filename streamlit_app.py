"""voicechat's Streamlit dashboard: ``streamlit run streamlit_app.py`` (or ``voicechat app`` from an install).

Thin on purpose: the page lives in :mod:`voicechat.streamlit.page`, the embeddable voice chat it
is built from in :mod:`voicechat.streamlit.embed`. ``VOICECHAT_WEBRTC_DEBUG=1`` prints
streamlit-webrtc's debug log (signalling, context resets).
"""

from voicechat.streamlit.page import main

main()
