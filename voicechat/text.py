"""Cutting a streamed reply into speakable pieces, as early as sounds natural.

The first piece may end at a clause (a comma after a few words) so speech starts
sooner; later pieces end at sentence boundaries, so prosody stays natural.
"""

from __future__ import annotations

import re

_SENTENCE_END = re.compile(r"([.!?…]+[\"')\]]*)(\s+)|([。！？]+)")
_CLAUSE_END = re.compile(r"([,;:—])(\s+)|([，、；：])")
_ABBREVIATIONS = ("mr.", "mrs.", "ms.", "dr.", "st.", "vs.", "e.g.", "i.e.", "etc.", "no.", "prof.")


class SentenceSplitter:
    """Feed text deltas; get back complete pieces to speak. ``flush()`` returns the rest."""

    def __init__(self, first_clause_words: int = 4, first_piece_words: int = 4, max_chars: int = 220) -> None:
        self.first_clause_words = first_clause_words
        self.first_piece_words = first_piece_words
        self.max_chars = max_chars
        self._buf = ""
        self._emitted = 0

    def push(self, delta: str) -> list[str]:
        self._buf += delta
        out: list[str] = []
        while True:
            piece = self._next_piece()
            if piece is None:
                break
            out.append(piece)
        return out

    def flush(self) -> list[str]:
        rest = self._buf.strip()
        self._buf = ""
        if rest:
            self._emitted += 1
            return [rest]
        return []

    def _next_piece(self) -> str | None:
        cut = self._find_sentence_end()
        if cut is None and self._emitted == 0:
            cut = self._find_clause_end()
        if cut is None and self._emitted == 0 and self.first_piece_words > 0:
            cut = self._find_word_cut()
        if cut is None and len(self._buf) > self.max_chars:
            space = self._buf.rfind(" ", 0, self.max_chars)
            cut = space if space > 0 else self.max_chars
        if cut is None:
            return None
        piece, self._buf = self._buf[:cut].strip(), self._buf[cut:]
        if not piece:
            return None
        self._emitted += 1
        return piece

    def _find_sentence_end(self) -> int | None:
        for m in _SENTENCE_END.finditer(self._buf):
            end = m.end(1) if m.group(1) else m.end(3)
            before = self._buf[:end].lower().split()
            if m.group(1) and before and before[-1] in _ABBREVIATIONS:
                continue
            if m.group(1) == "." and re.search(r"(?:^|\n)[ \t]*\d+\.$", self._buf[:end]):
                continue  # "3. Take a walk" at the start of a line: a list item's number, not a sentence
            if m.group(1) and re.search(r"\d\.$", self._buf[:end]) and m.group(1) == ".":
                # "1." in a list, or a number: only a sentence end if followed by a capital
                nxt = self._buf[m.end() : m.end() + 1]
                if not nxt or not nxt.isupper():
                    continue
            return end
        return None

    def _find_word_cut(self) -> int | None:
        """After ``first_piece_words`` whole words with no punctuation yet, start speaking anyway.

        Only when another word has begun after them, so the last word is known to be complete,
        and never right before a short tail (a following word ending the sentence is not known yet).
        """
        words = list(re.finditer(r"\S+", self._buf))
        if len(words) <= self.first_piece_words or re.search(r"[\u3040-\u30ff\u4e00-\u9fff\uac00-\ud7af]", self._buf):
            return None  # CJK has no spaces between words: wait for punctuation
        if re.search(r"[.!?…][\"')\]]*$", self._buf.rstrip()):
            return None  # a sentence end is probably here already; the next delta will confirm it
        return words[self.first_piece_words - 1].end()

    def _find_clause_end(self) -> int | None:
        for m in _CLAUSE_END.finditer(self._buf):
            end = m.end(1) if m.group(1) else m.end(3)
            words = len(self._buf[:end].split())
            if m.group(3) or words >= self.first_clause_words:
                return end
        return None
