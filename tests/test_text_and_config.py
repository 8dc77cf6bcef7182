"""Sentence cutting for early speech, settings precedence, and the key staying out of sight."""

from __future__ import annotations

import dataclasses
import itertools
import re
from pathlib import Path

import pytest

from voicechat.config import Settings, TurnSettings
from voicechat.errors import ConfigError
from voicechat.history import Entry, History
from voicechat.text import SentenceSplitter


def _split(text: str, step: int = 3) -> list[str]:
    s = SentenceSplitter()
    out: list[str] = []
    for i in range(0, len(text), step):
        out += s.push(text[i : i + step])
    return out + s.flush()


def test_sentences_come_out_while_streaming_and_first_clause_early() -> None:
    pieces = _split("Well, that is great, really. Mr. Smith paid $3.50 today! Is it 5.30 now? Yes.")
    assert pieces[0] == "Well, that is great,"
    assert "Mr. Smith paid $3.50 today!" in pieces
    assert "Is it 5.30 now?" in pieces
    assert pieces[-1] == "Yes."


def test_first_piece_starts_after_a_few_words_when_no_punctuation_comes() -> None:
    pieces = _split("The capital of Italy is Rome and it is lovely in spring.", step=2)
    assert pieces[0] == "The capital of Italy"
    assert pieces[1] == "is Rome and it is lovely in spring."
    assert _split("Yes.") == ["Yes."]  # short replies are not cut


def test_cjk_sentences_split_without_spaces() -> None:
    expected = ["안녕하세요。", "오늘 날씨가 좋네요！", "뭐 할까요？"]
    assert _split("".join(expected)) == expected


def test_long_text_without_punctuation_is_cut_at_a_space() -> None:
    pieces = _split("word " * 100)
    assert len(pieces) > 1 and all(len(p) <= 220 for p in pieces)


def test_precedence_arguments_over_environment_over_dotenv(tmp_path: Path) -> None:
    dotenv = tmp_path / ".env"
    dotenv.write_text("VOICECHAT_LANGUAGE=ja-JP\nVOICECHAT_MAX_TOKENS=77\nVOICECHAT_TTS_SPEED=1.5\n")
    s = Settings.load({}, environ={}, dotenv_path=dotenv)
    assert (s.language, s.max_tokens, s.tts_speed) == ("ja-JP", 77, 1.5)
    s = Settings.load({}, environ={"VOICECHAT_LANGUAGE": "ko-KR"}, dotenv_path=dotenv)
    assert s.language == "ko-KR" and s.max_tokens == 77
    s = Settings.load(
        {"language": "zh-CN", "max_tokens": None}, environ={"VOICECHAT_LANGUAGE": "ko-KR"}, dotenv_path=dotenv
    )
    assert s.language == "zh-CN" and s.max_tokens == 77


def test_key_chooses_openai_and_never_shows(tmp_path: Path) -> None:
    key = "sk-test-SECRET-0123456789"
    s = Settings.load({}, environ={"OPENAI_API_KEY": key}, dotenv_path=None)
    assert s.backend("llm") == "openai" and "OPENAI_API_KEY is set" in s.backend_reason("llm")
    assert key not in repr(s) and key not in str(s.public_dict())
    offline = Settings.load({}, environ={}, dotenv_path=None)
    assert offline.backend("stt") == "local" and "offline" in offline.backend_reason("stt")
    assert Settings.load({"tts": "local"}, environ={"OPENAI_API_KEY": key}, dotenv_path=None).backend("tts") == "local"


def test_bad_settings_say_what_to_set() -> None:
    with pytest.raises(ConfigError, match="VOICECHAT_LLM"):
        Settings.load({"llm": "gpt"}, environ={}, dotenv_path=None)
    with pytest.raises(ConfigError, match="VOICECHAT_MAX_TOKENS"):
        Settings.load({}, environ={"VOICECHAT_MAX_TOKENS": "lots"}, dotenv_path=None)
    with pytest.raises(ConfigError, match="ko-KR"):
        Settings.load({"language": "fr-FR"}, environ={}, dotenv_path=None)


def test_turn_settings_are_one_frozen_group_read_from_the_same_variables(tmp_path: Path) -> None:
    dotenv = tmp_path / ".env"
    dotenv.write_text("VOICECHAT_END_OF_TURN_MS=700\nVOICECHAT_VAD=webrtc\n")
    s = Settings.load({"barge_in_ms": 300}, environ={"VOICECHAT_END_OF_TURN": "silence"}, dotenv_path=dotenv)
    assert s.turn == TurnSettings(vad="webrtc", barge_in_ms=300, end_of_turn_ms=700, end_of_turn="silence")
    with pytest.raises(dataclasses.FrozenInstanceError):
        s.turn.end_of_turn_ms = 100  # type: ignore[misc]
    semantic = s.replace(end_of_turn="semantic", language="ko-KR")
    assert semantic.turn == dataclasses.replace(s.turn, end_of_turn="semantic") and semantic.language == "ko-KR"
    assert s.turn.end_of_turn == "silence"  # the original is untouched
    assert s.public_dict()["end_of_turn_ms"] == 700  # shown flat, as the environment names it
    with pytest.raises(ConfigError, match="VOICECHAT_END_OF_TURN_MS"):
        Settings.load({}, environ={"VOICECHAT_END_OF_TURN_MS": "soon"}, dotenv_path=None)
    with pytest.raises(ConfigError, match="VOICECHAT_VAD_THRESHOLD"):
        s.replace(vad_threshold=1.5)


def test_history_window_and_cut_off_marking() -> None:
    h = History()
    for i in range(6):
        h.add(Entry("user", f"question {i}", i))
        h.add(Entry("assistant", f"answer {i}", i, cut_off=(i == 5)))
    msgs = h.messages("be brief", window=4)
    assert [m.role for m in msgs] == ["system", "user", "assistant", "user", "assistant"]
    assert msgs[1].content == "question 4" and msgs[-1].content.startswith("answer 5")
    assert msgs[-1].content.endswith("…")  # the model learns its last answer was cut
    assert len(h.entries) == 12  # nothing dropped from the record


def test_the_llm_window_moves_in_steps_so_most_turns_extend_the_previous_prompt() -> None:
    """A prompt that starts with the previous one lets the local model reuse its cache (the
    first words come ~0.3 s sooner on 2 cores); a window sliding by one turn broke it every turn."""
    h, prompts = History(), []
    for i in range(20):
        prompts.append(h.messages("be brief", window=8))
        h.add(Entry("user", f"question {i}", i))
        h.add(Entry("assistant", f"answer {i}", i))
    extends = [p[: len(q)] == q for q, p in itertools.pairwise(prompts)]
    assert extends.count(False) <= 8, extends  # one turn in two at most (every turn from the 5th, before)
    assert all(len(p) - 1 <= 8 for p in prompts)  # never more than the window
    assert all(len(p) - 1 > 4 for p in prompts[4:])  # never less than half of it once there is history
    assert prompts[-1][-1].content == "answer 18"  # the latest turn is always there


def test_markdown_export_escapes_links_and_html() -> None:
    h = History()
    h.add(Entry("user", "<img src=x onerror=alert(1)> [x](javascript:alert(1))", 1))
    md = h.to_markdown()
    assert not re.search(r"(?<!\\)<img", md) and "](javascript" not in md
    assert "\\<img src=x onerror=alert\\(1\\)\\>" in md


def test_env_example_copied_to_dotenv_gives_the_defaults(tmp_path: Path) -> None:
    """A newcomer's first step is `cp .env.example .env`: that must not change any setting."""
    example = Path(__file__).resolve().parent.parent / ".env.example"
    dotenv = tmp_path / ".env"
    dotenv.write_text(example.read_text())
    loaded = Settings.load({}, environ={}, dotenv_path=dotenv)
    assert loaded.public_dict() == Settings().public_dict()
