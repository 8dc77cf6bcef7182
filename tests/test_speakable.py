"""The voice says what a person reading the reply aloud would say; the transcript keeps what was written.

Replies below are in the shape cloud models answer in (Markdown, emoji, URLs), streamed in small
deltas through the same sentence splitter the reply pipeline uses, so pieces split mid-format too.
The end-to-end test speaks a Markdown reply with Piper and transcribes it with Whisper.
"""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from voicechat.speakable import SpeakableText, url_words
from voicechat.text import SentenceSplitter


def spoken(reply: str, delta: int = 5) -> list[str]:
    """What the TTS is asked to say, piece by piece, for ``reply`` streamed ``delta`` characters at a time."""
    splitter, speakable = SentenceSplitter(), SpeakableText()
    pieces = []
    for i in range(0, len(reply), delta):
        pieces += splitter.push(reply[i : i + delta])
    pieces += splitter.flush()
    return [s for s in (speakable.clean(p) for p in pieces) if s]


REPLIES = {
    "bold and emoji": (
        "**Rome** is the capital of Italy! 🇮🇹 It's famous for the Colosseum and the Vatican. 😊",
        "Rome is the capital of Italy! It's famous for the Colosseum and the Vatican.",
    ),
    "numbered list": (
        "Here are three tips:\n\n1. **Drink water** regularly.\n2. *Sleep* at least 7 hours.\n"
        "3. Take short walks 🚶‍♂️\n\nLet me know if you need more!",
        "Here are three tips: 1, Drink water regularly. 2, Sleep at least 7 hours. "
        "3, Take short walks. Let me know if you need more!",
    ),
    "bullets and heading": (
        "### Packing list\n- Passport\n- Charger 🔌\n- __Comfortable__ shoes\n\nHave a great trip! ✈️",
        "Packing list. Passport. Charger. Comfortable shoes. Have a great trip!",
    ),
    "links and bare urls": (
        "You can read more at https://en.wikipedia.org/wiki/Rome or on [the official site]"
        "(https://www.turismoroma.it/en). See also <https://www.italia.it/en>.",
        "You can read more at en.wikipedia.org or on the official site. See also italia.it.",
    ),
    "code span and block": (
        'Use the `print()` function:\n\n```python\nprint("hello")\nx = 1\n```\n\nThat prints *hello*.',
        "Use the print() function: That prints hello.",
    ),
    "table": (
        "| City | Country |\n|---|---|\n| Rome | Italy |\n| Paris | France |",
        "City, Country Rome, Italy. Paris, France",
    ),
    "strikethrough, quote, rule": (
        "> Note: ~~Tuesday~~ Wednesday works.\n\n---\n\nSee you then.",
        "Note: Tuesday Wednesday works. See you then.",
    ),
    "korean": ("안녕하세요! 😊 **서울**은 한국의 수도입니다.", "안녕하세요! 서울은 한국의 수도입니다."),
    "japanese": (
        "東京は日本の首都です。🗼 詳しくは https://www.japan.travel/ja/ を見てください。",
        "東京は日本の首都です。 詳しくは japan.travel を見てください。",
    ),
    "chinese": ("北京是中国的首都。🇨🇳 **欢迎**来玩！", "北京是中国的首都。 欢迎来玩！"),
    "plain text is untouched": (
        "The capital of Italy is Rome. It has 2.8 million people, e.g. in Trastevere.",
        "The capital of Italy is Rome. It has 2.8 million people, e.g. in Trastevere.",
    ),
}


@pytest.mark.parametrize("name", list(REPLIES))
def test_model_style_replies_become_speakable_text(name: str) -> None:
    reply, expected = REPLIES[name]
    assert " ".join(spoken(reply)) == expected
    for delta in (1, 3, 17, 1000):  # wherever the stream splits, the same words are said
        said = " ".join(spoken(reply, delta))
        assert not set("*#`|~_") & set(said) and "http" not in said, said
        assert said.replace(" ", "") == expected.replace(" ", "") or delta == 1000, said


def test_nothing_to_say_is_skipped_and_code_blocks_span_pieces() -> None:
    speakable = SpeakableText()
    assert speakable.clean("😊🎉") == ""
    assert speakable.clean("Here:\n```bash") == "Here:"
    assert speakable.clean("rm -rf build/. Then run make.") == ""  # still inside the block
    assert speakable.clean("```\nDone.") == "Done."


def test_snake_case_and_arithmetic_are_not_taken_for_emphasis() -> None:
    assert SpeakableText().clean("Set max_tokens to 50 and 2*3*4 stays.") == "Set max tokens to 50 and 2 3 4 stays."


def test_url_words_says_the_site() -> None:
    assert url_words("https://www.example.com/a/b?c=1#x") == "example.com"
    assert url_words("www.python.org") == "python.org"


@pytest.mark.slow
def test_markdown_reply_is_spoken_clean_and_kept_as_written() -> None:
    """A cloud-style reply through the real pipeline: OpenAI streaming over HTTP, Piper speaking,
    Whisper listening to what was said."""
    from voicechat.audio import int16_to_float
    from voicechat.config import Settings
    from voicechat.events import AudioOut, ReplyDelta
    from voicechat.llm.base import Message
    from voicechat.llm.openai import OpenAIChat
    from voicechat.reply import ReplyPipeline
    from voicechat.stt.local import LocalSTT
    from voicechat.tts.local import PiperTTS
    from voicechat_bench_kit.openai_loopback_server import FakeOpenAIServer

    reply = (
        "## Quick answer\n\n**Rome** is the capital of Italy! 🇮🇹😊\n\n"
        "- Read more at https://en.wikipedia.org/wiki/Rome today.\n- Use `print` and *always* test."
    )
    with FakeOpenAIServer(api_key=None) as server:
        server.chat_deltas = [reply[i : i + 4] for i in range(0, len(reply), 4)]
        chat = OpenAIChat(Settings(openai_base_url=server.base_url, max_retries=0))
        events: list[object] = []
        pipeline = ReplyPipeline(1, chat, PiperTTS(deterministic=True), 16000, events.append)

        async def run() -> None:
            await pipeline.run([Message("user", "What is the capital of Italy?")])
            await chat.aclose()

        asyncio.run(run())
    assert "".join(e.text for e in events if isinstance(e, ReplyDelta)) == reply  # the transcript keeps it all
    assert pipeline.times.text == reply
    pcm = np.concatenate([e.pcm for e in events if isinstance(e, AudioOut)])
    heard = (
        LocalSTT().transcribe_sync(np.concatenate([int16_to_float(pcm), np.zeros(16000, np.float32)]), "en-US").lower()
    )
    for word in ("quick answer", "capital of italy", "read more", "today", "always test"):
        assert word in heard, heard
    for noise in ("asterisk", "hash", "https", "slash", "smiling", "flag", "dash", "backtick"):
        assert noise not in heard, heard
