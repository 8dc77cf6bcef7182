"""What a backend may offer beyond its interface, as Protocols to check with ``isinstance``.

The interfaces (:class:`~voicechat.stt.base.SpeechToText`, :class:`~voicechat.llm.base.ChatModel`,
:class:`~voicechat.tts.base.TextToSpeech`) are all a backend must have. Local models add abilities
a cloud backend has no use for, and a remote one holds connections to close; the engine uses each
ability where a backend has it and does without where it does not. Only the methods' names are
checked at run time; mypy checks their signatures where backends are written.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

import numpy as np

from voicechat.llm.base import Message


@runtime_checkable
class WarmsUpChat(Protocol):
    """A local chat model: reads the fixed prompt once, so the first turn reuses its cache. Blocking."""

    def warm_up(self, messages: Sequence[Message]) -> None: ...


@runtime_checkable
class WarmsUp(Protocol):
    """A local end-of-turn scorer: prepares what its first score needs. Blocking."""

    def warm_up(self) -> None: ...


@runtime_checkable
class WarmsUpServer(Protocol):
    """An end-of-turn scorer on a model server: has the server read the fixed prompt once. On the loop."""

    async def awarm_up(self) -> None: ...


@runtime_checkable
class PrimesNextTurn(Protocol):
    """A local chat model, or a local end-of-turn scorer beside a cloud one: reads the conversation
    so far into its cache while the user speaks (:func:`voicechat.warm_up.prime_next_turn`).
    Blocking, on a worker thread."""

    def prime(self, messages: Sequence[Message], *, most: int | None = None) -> None: ...


@runtime_checkable
class PrimesOnServer(Protocol):
    """An end-of-turn scorer on a model server that keeps each conversation's prompt cached (a
    llama-server slot): has it read the conversation so far while the user speaks. On the loop."""

    async def aprime(self, messages: Sequence[Message]) -> None: ...


@runtime_checkable
class TranscribesInterim(Protocol):
    """A local STT: a live caption that steps aside when the final transcript needs the model."""

    async def transcribe_interim(self, audio: np.ndarray, *, language: str | None = None) -> str: ...


@runtime_checkable
class RunsOnThisCPU(Protocol):
    """A model that computes on this machine's cores, so a reply's text and voice compete for
    them (:mod:`voicechat.reply` lets the voice go first when both do)."""

    on_this_cpu: bool


@runtime_checkable
class Closes(Protocol):
    """A remote backend: holds pooled connections, released by ``aclose`` when the conversation ends."""

    async def aclose(self) -> None: ...
