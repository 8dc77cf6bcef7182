"""The chat-model interface: messages in, an async stream of text deltas out."""

from __future__ import annotations

import threading
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Literal, Protocol, runtime_checkable

Role = Literal["system", "user", "assistant"]


@dataclass(frozen=True)
class Message:
    role: Role
    content: str

    def as_dict(self) -> dict[str, str]:
        return {"role": self.role, "content": self.content}


@runtime_checkable
class ChatModel(Protocol):
    """A backend streams a reply.

    ``stream`` returns an async generator; closing it early (``aclose()``, or the
    task being cancelled on barge-in) must release its connection or worker
    thread promptly. It raises :class:`voicechat.errors.StreamInterrupted` with the
    partial text when the provider stops mid-reply.
    """

    name: str

    def stream(self, messages: Sequence[Message]) -> AsyncIterator[str]: ...


class PausableChat(Protocol):
    """A chat model that decodes on this machine's cores (``on_this_cpu``) and can wait between
    tokens while ``gate`` is cleared, so a voice on the same cores gets them first."""

    name: str
    on_this_cpu: bool

    def stream(self, messages: Sequence[Message], *, gate: threading.Event | None = None) -> AsyncIterator[str]: ...
