"""The Realtime API's client events, built as plain dicts, and the server events we read.

Plain dicts (not the SDK's typed params) so the same code talks to any OpenAI-compatible realtime
server and to the SDK versions that name things differently: the GA names
(``response.output_audio.delta``) and the beta ones (``response.audio.delta``) both map here.
"""

from __future__ import annotations

import base64
from collections.abc import Sequence
from typing import Any

import numpy as np

from voicechat.llm.base import Message

RATE = 24_000  # PCM16 mono, the rate the API takes and gives

AUDIO_DELTA = frozenset({"response.output_audio.delta", "response.audio.delta"})
TRANSCRIPT_DELTA = frozenset({"response.output_audio_transcript.delta", "response.audio_transcript.delta"})
TEXT_DELTA = frozenset({"response.output_text.delta", "response.text.delta"})
INPUT_TRANSCRIPT = "conversation.item.input_audio_transcription.completed"
INPUT_TRANSCRIPT_FAILED = "conversation.item.input_audio_transcription.failed"
COMMITTED = "input_audio_buffer.committed"
RESPONSE_CREATED = "response.created"
RESPONSE_DONE = "response.done"
ERROR = "error"
# Errors our own housekeeping can cause, harmless by design (cancelling a response that just ended).
BENIGN_ERROR_CODES = frozenset({"response_cancel_not_active", "item_truncate_invalid_item_id"})

Event = dict[str, Any]


def session_update(
    *, instructions: str, voice: str, transcription_model: str | None, language: str | None, turn_detection: str | None
) -> Event:
    """The session as voicechat runs it: audio out, PCM16 both ways, turns decided by us unless
    ``turn_detection`` names the server's detector (``server_vad`` / ``semantic_vad``)."""
    transcription: dict[str, Any] | None = None
    if transcription_model:
        transcription = {"model": transcription_model, **({"language": language} if language else {})}
    pcm = {"type": "audio/pcm", "rate": RATE}
    return {
        "type": "session.update",
        "session": {
            "type": "realtime",
            "instructions": instructions,
            "output_modalities": ["audio"],
            "audio": {
                "input": {
                    "format": pcm,
                    "transcription": transcription,
                    "turn_detection": {"type": turn_detection} if turn_detection else None,
                },
                "output": {"format": pcm, "voice": voice},
            },
        },
    }


def append_audio(pcm16: np.ndarray) -> Event:
    return {"type": "input_audio_buffer.append", "audio": base64.b64encode(pcm16.astype("<i2").tobytes()).decode()}


def commit() -> Event:
    return {"type": "input_audio_buffer.commit"}


def clear_input() -> Event:
    return {"type": "input_audio_buffer.clear"}


def text_item(role: str, text: str, item_id: str | None = None) -> Event:
    """A message in the conversation: the user's typed words, or history replayed after a reconnect."""
    kind = "output_text" if role == "assistant" else "input_text"
    item: dict[str, Any] = {"type": "message", "role": role, "content": [{"type": kind, "text": text}]}
    if item_id:
        item["id"] = item_id
    return {"type": "conversation.item.create", "item": item}


def history_items(history: Sequence[Message]) -> list[Event]:
    """The conversation so far as items, for a fresh connection (the system prompt is the instructions)."""
    return [text_item(m.role, m.content) for m in history if m.role != "system" and m.content]


def response_create(tag: str) -> Event:
    """Ask for a reply; ``tag`` comes back in ``response.created`` so late events of an older one are told apart."""
    return {"type": "response.create", "response": {"metadata": {"voicechat": tag}}}


def response_cancel() -> Event:
    return {"type": "response.cancel"}


def truncate(item_id: str, audio_end_ms: int) -> Event:
    return {"type": "conversation.item.truncate", "item_id": item_id, "content_index": 0, "audio_end_ms": audio_end_ms}


def delete_item(item_id: str) -> Event:
    return {"type": "conversation.item.delete", "item_id": item_id}


def decode_audio(delta: str) -> np.ndarray:
    return np.frombuffer(base64.b64decode(delta), dtype="<i2").astype(np.int16)


def response_id(event: Event) -> str | None:
    """The response an event belongs to, wherever this event type keeps it."""
    rid = event.get("response_id")
    if rid is None and isinstance(event.get("response"), dict):
        rid = event["response"].get("id")
    return rid if isinstance(rid, str) else None
