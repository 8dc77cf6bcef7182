"""The Streamlit surface of voicechat: WebRTC wiring, page pieces, labels, ICE and the browser STT component.

Everything that imports Streamlit or streamlit-webrtc lives here, never in ``voicechat/``,
so the engine stays importable (and testable) without a UI toolkit.
"""
