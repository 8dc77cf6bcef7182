"""Chat backends: ``local`` (llama-cpp-python, GGUF) and ``openai`` (any compatible server)."""

from voicechat.llm.base import ChatModel, Message

__all__ = ["ChatModel", "Message"]
