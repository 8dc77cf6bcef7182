"""What a voice should say of a written reply: Markdown, emoji and URLs made speakable.

Cloud models answer in Markdown (``**bold**``, ``# headings``, lists, code spans and blocks,
tables, links) with emoji and bare URLs; a TTS reads those aloud ("asterisk asterisk", "h t t p s
colon slash slash…") or mangles the sentence around them. :class:`SpeakableText` turns each
sentence the splitter cuts into what a person would say reading it out: formatting marks
dropped, a link read as its text, a bare URL as its site name, a code block left to the screen.
Only the voice gets this text: the transcript, history and exports keep the reply as written.

One instance per reply, fed its pieces in order, because a code block can span several pieces.
Pure string work on the engine's loop; no state beyond that one flag.
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit

_FENCE = re.compile(r"^\s*(```|~~~)")
_IMAGE = re.compile(r"!\[([^\]]*)\]\([^)]*\)")
_LINK = re.compile(r"\[([^\]]+)\]\((?:[^()\s]|\([^)]*\))+\)")
_AUTOLINK = re.compile(r"<((?:https?|ftp)://[^>\s]+)>")
_URL = re.compile(r"\b(?:https?://|www\.)[^\s<>()\[\]]*[^\s<>()\[\].,;:!?'\"]")
_INLINE_CODE = re.compile(r"`+([^`]+)`+")
_BOLD = re.compile(r"(\*\*|__)(?=\S)(.+?)(?<=\S)\1")
_STAR_ITALIC = re.compile(r"(?<![\w*])\*(?=\S)([^*\n]+?)(?<=\S)\*(?![\w*])")
_UNDERSCORE_ITALIC = re.compile(r"(?<![\w_])_(?=\S)([^_\n]+?)(?<=\S)_(?![\w_])")
_STRIKE = re.compile(r"~~(.+?)~~")
_HEADING = re.compile(r"^\s{0,3}#{1,6}\s+(.*?)\s*#*\s*$")
_BULLET = re.compile(r"^\s*(?:[-*+•]|\d+[.)])\s+")
_NUMBERED = re.compile(r"^\s*(\d+)[.)]\s+")
_QUOTE = re.compile(r"^\s*(?:>\s?)+")
_RULE = re.compile(r"^\s*(?:[-*_]\s*){3,}$")
_TABLE_RULE = re.compile(r"^\s*\|?\s*:?-{2,}:?\s*(?:\|\s*:?-{2,}:?\s*)*\|?\s*$")
_HTML_TAG = re.compile(r"</?[a-zA-Z][^>]*>")
_EMOJI = re.compile(
    "["
    "\U0001f000-\U0001faff"  # pictographs, emoticons, transport, flags' letters, symbols & pictographs ext.
    "\u2600-\u27bf"  # miscellaneous symbols, dingbats
    "\u2b00-\u2bff"  # arrows and stars used as emoji (⭐ ⬆)
    "\u2300-\u23ff"  # technical symbols used as emoji (⌚ ⏰ ⏩)
    "\ufe0e\ufe0f\u200d\u20e3"  # variation selectors, zero-width joiner, keycap
    "\U000e0020-\U000e007f"  # tag characters (subdivision flags)
    "]+"
)
_LEFTOVER = re.compile(r"[*_`~|#]+")
_SPACES = re.compile(r"[ \t\u00a0]+")
_ENDS_CLAUSE = re.compile(r"[.!?…:;,。！？，、；：]$")


def url_words(url: str) -> str:
    """A URL as a person says it: the site's name ("en.wikipedia.org"), not the path or scheme."""
    parts = urlsplit(url if "://" in url else f"http://{url}")
    host = (parts.hostname or "").removeprefix("www.")
    return host or url


class SpeakableText:
    """Cleans the pieces of one reply for the voice; ``clean`` returns "" when nothing is left to say."""

    def __init__(self) -> None:
        self._in_code_block = False

    def clean(self, piece: str) -> str:
        lines = []
        for line in piece.split("\n"):
            if _FENCE.match(line):
                self._in_code_block = not self._in_code_block
                continue
            if self._in_code_block:
                continue  # code is for reading on screen, not for hearing
            spoken = _clean_line(line)
            if spoken:
                lines.append(spoken)
        # A line break is a pause the reader would make: keep it as punctuation.
        out = ""
        for i, line in enumerate(lines):
            out += line
            if i < len(lines) - 1:
                out += " " if _ENDS_CLAUSE.search(line) else ". "
        return out.strip()


def _clean_line(line: str) -> str:
    if _RULE.match(line) or _TABLE_RULE.match(line):
        return ""
    heading = _HEADING.match(line)
    if heading:
        line = heading.group(1)
        if line and not _ENDS_CLAUSE.search(line):
            line += "."
    line = _QUOTE.sub("", line)
    numbered = _NUMBERED.match(line)
    line = _BULLET.sub(f"{numbered.group(1)}, " if numbered else "", line)
    if line.count("|") >= 2:  # a table row: its cells, as a list
        line = ", ".join(cell.strip() for cell in line.strip().strip("|").split("|") if cell.strip())
    line = _IMAGE.sub(lambda m: m.group(1), line)
    line = _LINK.sub(lambda m: m.group(1), line)
    line = _AUTOLINK.sub(lambda m: url_words(m.group(1)), line)
    line = _URL.sub(lambda m: url_words(m.group(0)), line)
    line = _INLINE_CODE.sub(lambda m: m.group(1), line)
    line = _HTML_TAG.sub(" ", line)
    for pattern in (_BOLD, _STRIKE):
        line = pattern.sub(lambda m: m.group(m.lastindex or 1), line)
    line = _STAR_ITALIC.sub(lambda m: m.group(1), line)
    line = _UNDERSCORE_ITALIC.sub(lambda m: m.group(1), line)
    line = _EMOJI.sub(" ", line)
    line = _LEFTOVER.sub(" ", line)
    line = _SPACES.sub(" ", line).strip()
    line = re.sub(r"\s+([,.!?;:])", r"\1", line)  # "Rome ." after a dropped emoji → "Rome."
    return "" if not re.search(r"\w", line) else line
