"""The voicechat conversation as a Jupyter widget: ``from voicechat.notebook import VoiceChatWidget``.

This package is the only place that imports ipywidgets and anywidget (``pip install
"voicechat[notebook]"``); ``import voicechat`` never does, so the core stays light.
"""

from __future__ import annotations

try:
    from voicechat.notebook.browser_widget import VoiceBridge
    from voicechat.notebook.widget import VoiceChatWidget
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError(
        f'voicechat.notebook needs ipywidgets and anywidget ({exc.name} is missing): pip install "voicechat[notebook]"'
    ) from exc

__all__ = ["VoiceBridge", "VoiceChatWidget"]
