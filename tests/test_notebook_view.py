"""Fast checks of the notebook widget's pieces that need neither a kernel nor models."""

from __future__ import annotations

import numpy as np

from voicechat.events import State, TurnMetrics
from voicechat.notebook import _view
from voicechat.notebook.browser_widget import VoiceBridge
from voicechat.ui_state import ChatLine


def test_transcripts_and_replies_cannot_inject_markup() -> None:
    html = _view.chat_html(
        [
            ChatLine("user", "<img src=x onerror=alert(1)> & co", 1, "t"),
            ChatLine("assistant", "<script>x()</script>", 1, "t", streaming=True),
        ]
    )
    assert "<img" not in html and "<script>" not in html
    assert "&lt;img src=x onerror=alert(1)&gt; &amp; co" in html
    assert 'class="vc-line vc-assistant vc-streaming"' in html
    assert "&lt;b&gt;" in _view.partial_html("<b>") and "&lt;" in _view.errors_html(["<x>"])


def test_lights_follow_state_and_microphone() -> None:
    assert "vc-listening vc-lit" not in _view.lights_html(State.LISTENING, mic_on=False, engine="", ready=True)
    assert "vc-listening vc-lit" in _view.lights_html(State.LISTENING, mic_on=True, engine="", ready=True)
    speaking = _view.lights_html(State.SPEAKING, mic_on=True, engine="ready <x>", ready=True)
    assert "vc-speaking vc-lit" in speaking and "vc-ready" in speaking and "ready &lt;x&gt;" in speaking


def test_every_light_keeps_its_name_when_off() -> None:
    """An unlit light must still say which light it is (it used to read "Idle")."""
    import re

    for state in State:
        html = _view.lights_html(state, mic_on=True, engine="", ready=True)
        names = re.findall(r'<span class="vc-light [^"]*" data-on="(\w+)">([^<]*)</span>', html)
        assert [n for _, n in names] == ["Listening", "AI thinking", "Speaking"], html
        assert sum(on == "true" for on, _ in names) == 1  # a fresh engine (IDLE) with a microphone listens
    off = _view.lights_html(State.IDLE, mic_on=False, engine="", ready=True)
    assert 'data-on="true"' not in off and ">Listening<" in off
    korean = _view.lights_html(State.THINKING, mic_on=True, engine="", ready=True, language="ko-KR")
    assert ">듣고 있음<" in korean and 'vc-thinking vc-lit" data-on="true">AI 생각 중<' in korean
    assert ">말하는 중<" in korean and "Idle" not in korean and "대기" not in korean


def test_latency_readout_shows_the_last_turns() -> None:
    rows = [TurnMetrics(i, stt_ms=100.0 + i, first_audio_ms=900.0) for i in range(1, 6)]
    html = _view.latency_html(rows)
    assert "turn 1:" not in html and "turn 5: first audio 900 ms" in html and "stt 105" in html
    assert "llm –" in html


def test_bridge_decodes_binary_chunks_and_ignores_junk() -> None:
    bridge = VoiceBridge()
    got: list[tuple[np.ndarray, int]] = []
    texts: list[tuple[str, bool]] = []
    bridge.on_audio = lambda pcm, rate: got.append((pcm, rate))
    bridge.on_transcript = lambda text, final: texts.append((text, final))
    chunk = (np.arange(1600, dtype=np.int16) - 800).astype("<i2")
    bridge._on_custom(bridge, {"type": "audio", "rate": 16000, "seq": 0}, [memoryview(chunk.tobytes())])
    bridge._on_custom(bridge, {"type": "audio", "rate": 16000}, [])  # no buffer: ignored
    bridge._on_custom(bridge, "not a dict", None)
    bridge._on_custom(bridge, {"type": "audio", "rate": "fast"}, [b"\x00\x00"])  # logged, not raised
    bridge._on_custom(bridge, {"type": "transcript", "text": "hello", "final": True}, None)
    assert len(got) == 1 and got[0][1] == 16000 and np.array_equal(got[0][0], chunk)
    assert got[0][0].dtype == np.int16 and got[0][0].flags.writeable
    assert texts == [("hello", True)]
    assert bridge.chunks_in == 1
    bridge.send_audio(chunk, 24000, gen=1, turn=1)  # no kernel: nothing to send to, no error
    bridge.flush(gen=1, turn=1)
    assert bridge.chunks_out == 1
    bridge.close()
