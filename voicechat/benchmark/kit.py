"""``voicechat bench`` plays the recordings and talks to the loopback server of voicechat-bench-kit.

The kit is a distribution of its own (``bench_kit/`` in the checkout), so the product's wheel
carries no test rig; the ``bench`` extra and ``./scripts/install.sh --dev`` install it. The kit
imports nothing from voicechat.
"""

from __future__ import annotations

import importlib.util

from voicechat.errors import ConfigError

INSTALL_HINT = "run ./scripts/install.sh --dev in a voicechat checkout, or pip install ./bench_kit from it"


def require_kit() -> None:
    """Before any benchmark module (they import the kit) is loaded: one line saying how to get it."""
    if importlib.util.find_spec("voicechat_bench_kit") is None:
        raise ConfigError(
            "voicechat bench needs the voicechat-bench-kit package (its recordings and loopback server)",
            INSTALL_HINT,
        )
