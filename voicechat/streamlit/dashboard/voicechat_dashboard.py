"""The bundled dashboard as a script for ``streamlit run`` (what ``voicechat app`` starts).

Runs the page on import, so import :mod:`voicechat.streamlit.page` instead if you want the code.
"""

from voicechat import tune_process
from voicechat.streamlit.page import main

tune_process()  # this process serves the app alone: see voicechat.process_tuning
main()
