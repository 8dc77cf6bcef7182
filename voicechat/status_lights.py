"""The three status lights both surfaces show: which one is lit, and what each is called.

Every light keeps its name whether it is on or off — an unlit light that read "Idle" left nobody
able to tell the three apart — and on/off is shown by colour and weight. The names are in Korean
or English; ja-JP and zh-CN conversations get English (see ``voicechat/streamlit/i18n.py`` for why).
Pure functions, no UI toolkit, so the Streamlit page and the notebook widget share them.
"""

from __future__ import annotations

from typing import Final

from voicechat.events import State

LIGHTS: Final[tuple[State, ...]] = (State.LISTENING, State.THINKING, State.SPEAKING)

NAMES: Final[dict[str, dict[State, str]]] = {
    "en": {State.LISTENING: "Listening", State.THINKING: "AI thinking", State.SPEAKING: "Speaking"},
    "ko": {State.LISTENING: "듣고 있음", State.THINKING: "AI 생각 중", State.SPEAKING: "말하는 중"},
}


def light_names(language: str) -> dict[State, str]:
    """Each light's name for a conversation language code such as ``ko-KR`` (English but for Korean)."""
    return NAMES["ko" if language.lower().startswith("ko") else "en"]


def lit_light(state: State, *, listening: bool = True) -> State | None:
    """The one light that is on for ``state``, or ``None``.

    ``listening``: a microphone is connected to a running engine. Without one the engine may be
    in its listening state, but nobody is being heard, so that light stays off; with one, a fresh
    engine that has not reported a state yet (``IDLE``) is listening.
    """
    if state in (State.IDLE, State.LISTENING):
        return State.LISTENING if listening else None
    return state if state in LIGHTS else None
