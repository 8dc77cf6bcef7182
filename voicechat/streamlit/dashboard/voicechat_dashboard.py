"""The bundled dashboard as a script for ``streamlit run`` (what ``voicechat app`` starts).

Runs the page on import, so import :mod:`voicechat.streamlit.page` instead if you want the code.
"""

from voicechat.streamlit.page import main

main()
