"""Every ``st.session_state`` and widget key one voice chat uses, derived from the ``key`` its caller gave.

Two voice chats on one page need disjoint keys, and the keys must be the same on every run
(streamlit-webrtc finds its context by key; a new key is a new connection). The default
``key="voicechat"`` keeps the names the dashboard has always used (``vc_*`` widgets), so saved
links, tests and deployments see no change. No Streamlit import: plain strings.
"""

from __future__ import annotations

from dataclasses import dataclass

DEFAULT_KEY = "voicechat"


@dataclass(frozen=True)
class StreamerKeys:
    key: str = DEFAULT_KEY

    def __post_init__(self) -> None:
        if not self.key or not isinstance(self.key, str):
            raise ValueError(f"voice_chat key must be a non-empty string, not {self.key!r}")

    @property
    def session(self) -> str:
        return f"{self.key}_session"

    @property
    def observer(self) -> str:
        return f"{self.key}_session_observer"

    @property
    def barrier(self) -> str:
        return f"{self.key}_run_barrier"

    @property
    def streamer(self) -> str:
        return f"{self.key}-webrtc"

    @property
    def sink(self) -> str:
        return f"{self.key}-mic"

    @property
    def source(self) -> str:
        return f"{self.key}-reply"

    @property
    def browser_stt(self) -> str:
        return f"{self.key}-browser-stt"

    def widget(self, name: str) -> str:
        """A widget key: ``vc_<name>`` for the default chat, ``<key>_<name>`` for any other."""
        return f"vc_{name}" if self.key == DEFAULT_KEY else f"{self.key}_{name}"


DEFAULT_KEYS = StreamerKeys()
