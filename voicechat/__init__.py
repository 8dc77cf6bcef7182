"""voicechat: talk to an AI with your voice and hear it answer, in real time.

The core needs only numpy, PyAV and python-dotenv; backends import their packages
when chosen. Neither Streamlit nor ipywidgets is imported from here. Importing voicechat
changes no process-wide setting; :func:`tune_process` does, for a process that mostly serves
conversations (the bundled app and the ``voicechat`` command call it).
"""

from voicechat.config import LANGUAGES, Settings
from voicechat.conversation_factory import create_conversation
from voicechat.engine import Conversation
from voicechat.errors import VoicechatError
from voicechat.events import State
from voicechat.history import History
from voicechat.process_tuning import tune_process

__all__ = [
    "LANGUAGES",
    "Conversation",
    "History",
    "Settings",
    "State",
    "VoicechatError",
    "create_conversation",
    "tune_process",
]
__version__ = "0.1.0"
