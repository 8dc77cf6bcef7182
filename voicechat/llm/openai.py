"""Streaming chat through ``/chat/completions`` on OpenAI or any compatible server.

Deltas are yielded as they arrive so the engine can start speaking the first sentence
while the rest is still being generated. The SDK parses the SSE stream (correctly, across
TCP reads split mid-line); this module only decides what a failure means for the user.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Sequence
from typing import Any, cast

from voicechat.errors import StreamInterrupted, VoicechatError
from voicechat.llm.base import Message
from voicechat.openai_client import OpenAIBackend, base_url_of


class OpenAIChat(OpenAIBackend):
    """Streams replies from ``settings.openai_llm_model`` with the configured token budget."""

    stage = "llm"

    async def stream(self, messages: Sequence[Message]) -> AsyncGenerator[str, None]:
        """Yield content deltas in order.

        Closing this generator early (``aclose()`` or cancellation on barge-in) closes the
        HTTP response, so the server stops generating and the connection is not leaked.
        A failure after text arrived raises :class:`StreamInterrupted` carrying that text,
        so the engine can keep what was already said; a failure before it is translated.
        """
        client = self.client()
        try:
            stream = await client.chat.completions.create(
                model=self.settings.openai_llm_model,
                messages=cast(Any, [m.as_dict() for m in messages]),
                max_tokens=self.settings.max_tokens,
                temperature=self.settings.temperature,
                stream=True,
            )
        except VoicechatError:
            raise
        except Exception as exc:
            raise self.failure(exc) from exc

        received: list[str] = []
        try:
            async for chunk in stream:
                for text in _content_of(chunk):
                    received.append(text)
                    yield text
        except Exception as exc:
            cause = self.failure(exc)
            if not received:
                raise cause from exc
            raise StreamInterrupted(
                f"the reply from {base_url_of(self.settings)} stopped mid-way: {cause.message}",
                "what arrived so far was kept; ask again to continue",
                partial="".join(received),
            ) from exc
        finally:
            await stream.close()


def _content_of(chunk: Any) -> list[str]:
    """The text in one ``chat.completion.chunk``; role-only, usage and tool chunks have none."""
    texts: list[str] = []
    for choice in getattr(chunk, "choices", None) or ():
        if getattr(choice, "index", 0) != 0:
            continue
        delta = getattr(choice, "delta", None)
        content = getattr(delta, "content", None)
        if isinstance(content, str) and content:
            texts.append(content)
    return texts
