"""The speech-to-speech interface the engine's turns use in place of STT → LLM → TTS.

Only the shapes live here (no ``openai`` import), so the engine can ask whether its reply model
speaks for itself without loading anything.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Protocol, runtime_checkable

import numpy as np

from voicechat.events import Event
from voicechat.llm.base import Message

if TYPE_CHECKING:
    from voicechat.reply import ReplyTimes
    from voicechat.speculative_turn import TurnInput


class VoiceReply(Protocol):
    """One spoken reply to one turn, run on the engine's loop.

    ``times`` has the same marks as a pipeline reply (``llm_first_token``: first transcript delta,
    ``first_audio``: first audio frame), so turn metrics and "what was heard" work unchanged.
    """

    times: ReplyTimes

    async def run(self, source: TurnInput, history: Sequence[Message], heard: Callable[[str], None]) -> ReplyTimes:
        """Send the turn, stream the reply out through ``emit``; ``heard`` gets the user's transcript."""
        ...

    def stop(self, heard_s: float) -> None:
        """Barge-in or stop: the user heard ``heard_s`` seconds; the model must remember only that."""
        ...

    def forget(self) -> None:
        """The turn never happened (speech resumed): leave no trace of it in the model's memory."""
        ...


class ServerTurnHost(Protocol):
    """What a speech-to-speech model whose server ends the turns tells the conversation (the engine)."""

    def server_turn(self, response_id: str) -> None:
        """The server decided the user had finished and began the reply ``response_id``."""
        ...

    def server_error(self, message: str) -> None:
        """A failure outside any turn (the stream could not connect): one line for the user."""
        ...

    def history_for_server(self) -> Sequence[Message]:
        """The conversation so far, to replay to a new connection."""
        ...


@runtime_checkable
class SpeechToSpeech(Protocol):
    """A reply model that takes the user's audio and answers with audio (``VOICECHAT_LLM=realtime``).

    ``server_turns``: the server's own detector ends the turns; the engine then streams every chunk
    of microphone audio through :meth:`hear` and the server's replies arrive as ``host.server_turn``.
    """

    name: str
    server_turns: bool

    def attach(self, host: ServerTurnHost) -> None: ...

    def hear(self, samples: np.ndarray) -> None: ...

    def voice_reply(self, turn: int, output_rate: int, emit: Callable[[Event], None]) -> VoiceReply: ...

    def new_conversation(self) -> None:
        """Forget everything said so far (the conversation was cleared)."""
        ...


def speech_to_speech(model: object) -> SpeechToSpeech | None:
    """``model`` when it hears and speaks for itself, else ``None`` (a text chat model)."""
    return model if isinstance(model, SpeechToSpeech) else None
