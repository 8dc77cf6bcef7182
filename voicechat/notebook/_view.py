"""HTML for the widget's read-only parts, rendered from a :class:`voicechat.ui_state.Snapshot`.

Pure functions, so they run on whichever thread refreshes the widget (the kernel's main thread)
and can be tested without a kernel. Every piece of user or model text is HTML-escaped: a
transcript or a reply must never inject markup into the notebook.
"""

from __future__ import annotations

import html
from collections.abc import Iterable, Sequence

from voicechat.events import State, TurnMetrics
from voicechat.status_lights import LIGHTS, light_names, lit_light
from voicechat.ui_state import ChatLine


def lights_html(state: State, *, mic_on: bool, engine: str, ready: bool, language: str = "en-US") -> str:
    """The three status lights, each always named, plus a short note on the engine (loading, ready, failed).

    The lit one carries ``vc-lit`` (coloured dot, bold); the others stay readable in grey.
    """
    on = lit_light(state, listening=mic_on)
    names = light_names(language)
    lights = "".join(
        f'<span class="vc-light vc-{light.value}{" vc-lit" if light == on else ""}" '
        f'data-on="{"true" if light == on else "false"}">{html.escape(names[light])}</span>'
        for light in LIGHTS
    )
    ready_cls = " vc-ready" if ready else ""
    return (
        f'<div class="vc-lights{ready_cls}" data-state="{state.value}">{lights}'
        f'<span class="vc-engine">{html.escape(engine)}</span></div>'
    )


def partial_html(text: str) -> str:
    """The live interim transcript (what the recogniser thinks the user is saying right now)."""
    return f'<div class="vc-partial">{html.escape(text)}</div>'


def chat_html(lines: Sequence[ChatLine]) -> str:
    """The conversation; the reply that is still streaming carries ``vc-streaming``."""
    if not lines:
        return '<div class="vc-chat"><span class="vc-flag">Press 🎤 and ask something.</span></div>'
    parts = []
    for line in lines:
        cls = f"vc-line vc-{line.role}" + (" vc-streaming" if line.streaming else "")
        flag = " (interrupted)" if line.interrupted else " (cut off)" if line.cut_off else ""
        flag_html = f' <span class="vc-flag">{flag.strip()}</span>' if flag else ""
        parts.append(f'<div class="{cls}" data-turn="{line.turn}">{html.escape(line.text)}{flag_html}</div>')
    return '<div class="vc-chat">' + "".join(parts) + "</div>"


def _fmt(ms: float | None) -> str:
    return "–" if ms is None else f"{ms:.0f}"


def latency_html(metrics: Sequence[TurnMetrics], last: int = 3) -> str:
    """Per-turn latency, newest last: first audio = end of speech → first reply sound."""
    if not metrics:
        return '<div class="vc-latency"></div>'
    rows = [
        f"turn {m.turn}: first audio {_fmt(m.first_audio_ms)} ms "
        f"(eot {_fmt(m.eot_ms)} · stt {_fmt(m.stt_ms)} · llm {_fmt(m.llm_first_token_ms)}"
        f" · tts {_fmt(m.tts_first_audio_ms)})"
        for m in metrics[-last:]
    ]
    return '<div class="vc-latency">' + "<br>".join(html.escape(r) for r in rows) + "</div>"


def errors_html(errors: Iterable[str], last: int = 3) -> str:
    """The most recent errors (the session keeps going after them)."""
    recent = list(errors)[-last:]
    return '<div class="vc-errors">' + "<br>".join(html.escape(e) for e in recent) + "</div>"
