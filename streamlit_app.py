"""voicechat's Streamlit dashboard: ``streamlit run streamlit_app.py`` (or ``voicechat app`` from an install).

Thin on purpose: the page lives in :mod:`voicechat.streamlit.page`, the embeddable voice chat it
is built from in :mod:`voicechat.streamlit.embed`. ``VOICECHAT_WEBRTC_DEBUG=1`` prints
streamlit-webrtc's debug log (signalling, context resets).
"""

from voicechat import tune_process
from voicechat.streamlit.page import main

tune_process()  # this process serves the app alone: see voicechat.process_tuning
main()
