"""Holds only the script ``voicechat app`` hands to ``streamlit run`` (:data:`SCRIPT`).

Streamlit puts the folder of the script it runs on ``sys.path``; this folder holds nothing
else, so no module of ours becomes importable under a bare top-level name.
"""

from pathlib import Path

SCRIPT = Path(__file__).with_name("voicechat_dashboard.py")
