"""The server's per-session figures, appended as JSON lines to ``VOICECHAT_TEST_STATS`` when it is set.

A browser test that only looks at the page ("connected") cannot tell whether the server got any
audio; this file can. Unset in normal use, and then nothing is written. Called from the script
thread (the page's live fragment, and when a WebRTC session stops); a lock keeps lines whole if
two browser sessions write at once.
"""

from __future__ import annotations

import json
import os
import threading
import time
from typing import Any

_lock = threading.Lock()


def stats_path() -> str | None:
    return os.environ.get("VOICECHAT_TEST_STATS") or None


def write_stats(session_id: str, stats: dict[str, Any], **extra: Any) -> None:
    """Append one line ``{"t", "session", ...stats}`` if the hook is on."""
    path = stats_path()
    if path is None:
        return
    line = json.dumps({"t": round(time.time(), 3), "session": session_id, **stats, **extra}, ensure_ascii=False)
    with _lock, open(path, "a", encoding="utf-8") as f:
        f.write(line + "\n")


def read_stats(path: str) -> list[dict[str, Any]]:
    """Every line written so far (for tests and the stress script)."""
    try:
        with open(path, encoding="utf-8") as f:
            return [json.loads(line) for line in f if line.strip()]
    except FileNotFoundError:
        return []
