"""At most ``VOICECHAT_MAX_SESSIONS`` live voice connections per server process.

Each connected browser runs an engine in this process; past what the machine holds, every
conversation gets slower together (docs/scaling.md measures where). So a new WebRTC session past
the limit is refused before it starts — the page says why, in the page's language — and the
sessions already talking are not touched. Typed chat, the transcript and settings stay usable.

How a refusal works: the Start press reaches the server as the streamer's frontend state
(signalling). Before the streamer renders, :func:`admit` asks :data:`SLOTS` for a slot; when
none is free the streamer is rendered with ``desired_playing_state=False``, which makes the
browser hang up at once, and the session's engine is stopped so no frame of it is processed.
The next run finds the frontend stopped and renders the streamer normally again (Start shown).

A slot is held from admission until the frontend is stopped, the connection ends, or the
browser session closes (:meth:`SessionSlots.release` from those paths).

Threads: :func:`admit` runs on Streamlit script threads of many sessions at once; releases also
come from the disconnect thread and the shutdown observer. One lock guards the holders.
"""

from __future__ import annotations

import threading
from typing import Any


class SessionSlots:
    """Which browser sessions hold a live-connection slot in this process."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._holders: set[str] = set()

    def acquire(self, session_id: str, limit: int) -> bool:
        """Take a slot for ``session_id`` (idempotent); False when ``limit`` others hold one."""
        with self._lock:
            if session_id in self._holders:
                return True
            if limit > 0 and len(self._holders) >= limit:
                return False
            self._holders.add(session_id)
            return True

    def release(self, session_id: str) -> None:
        with self._lock:
            self._holders.discard(session_id)

    def holders(self) -> int:
        with self._lock:
            return len(self._holders)


SLOTS = SessionSlots()  # one per process: the limit is the process's, across all browser sessions


def frontend_wants_connection(context: Any) -> bool:
    """The streamer's frontend is connecting or connected (its state as of this run's start)."""
    state = getattr(context, "state", None)
    return bool(state is not None and (state.playing or state.signalling))


def admit(session_id: str, wants: bool, limit: int, slots: SessionSlots = SLOTS) -> bool:
    """Script thread, before the streamer renders: may this session's connection go ahead?

    A session that no longer wants a connection gives its slot back here too.
    """
    if not wants:
        slots.release(session_id)
        return True
    return slots.acquire(session_id, limit)
