"""voicechat's Streamlit dashboard: ``streamlit run streamlit_app.py``.

Thin on purpose: the page lives in :mod:`voicechat.streamlit.page`, the WebRTC wiring in
:mod:`voicechat.streamlit.webrtc`, the per-session engine in :mod:`voicechat.streamlit.browser_session`.
``VOICECHAT_WEBRTC_DEBUG=1`` prints streamlit-webrtc's debug log (signalling, context resets).
"""

import logging
import os

from voicechat.streamlit.page import main

if os.environ.get("VOICECHAT_WEBRTC_DEBUG"):
    _webrtc_log = logging.getLogger("streamlit_webrtc")
    if not _webrtc_log.handlers:  # the script reruns; add the handler once per process
        _handler = logging.StreamHandler()
        _handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        _webrtc_log.addHandler(_handler)
        _webrtc_log.setLevel(logging.DEBUG)

main()
