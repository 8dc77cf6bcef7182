"""The realtime run's figures (``voicechat bench --llm realtime``) as a terminal table and a docs block."""

from __future__ import annotations

import json
import platform
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from voicechat.benchmark.machine import describe
from voicechat.benchmark.report import put_block


def rows(r: dict[str, Any]) -> list[tuple[str, str, str, str]]:
    """(path, how turns end, voice-to-voice p50 / p95 / turns, false cut-offs / pauses) per path."""
    v2v, paused = r.get("voice_to_voice_ms") or {}, r.get("paused_speech") or {}
    out = []
    for name, how in r["modes"].items():
        v = v2v.get(name) or {}
        p = paused.get(name)
        cut = f"{p['false_cutoffs']} / {p['pauses_total']}" if p else "—"
        out.append((name, how, f"{v.get('p50')} / {v.get('p95')} ms ({v.get('turns', 0)} turns)", cut))
    return out


def table(r: dict[str, Any]) -> str:
    lines = [describe(r["machine"]), f"provider delay {r['provider_delay_s']} s before every first byte"]
    width = max(len(name) for name, *_ in rows(r))
    for name, _how, v, cut in rows(r):
        lines.append(f"{name:<{width}}  voice-to-voice p50 / p95 {v}; paused speech false cut-offs {cut}")
    return "\n".join(lines)


def markdown(r: dict[str, Any]) -> str:
    when = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    vad = r["server_vad"]
    lines = [
        f"Measured {when} on {describe(r['machine'])}, Python {platform.python_version()}: "
        f"{len(r['questions'])} turns × {r['rounds']} round(s) per path after one warm-up turn, every "
        f"provider request {round(r['provider_delay_s'] * 1000)} ms to its first byte (the realtime server's "
        f"transcript of a turn {round(r.get('transcript_delay_s', r['provider_delay_s']) * 1000)} ms after its "
        "commit at the earliest); the loopback "
        f"server_vad ends a turn after {vad['silence_duration_ms']} ms below int16 RMS {vad['voice_rms_int16']}.",
        "",
        "| path | turns end on | voice-to-voice p50 / p95 | paused speech: false cut-offs / pauses |",
        "|---|---|---|---|",
        *[f"| {name} | {how} | {v} | {cut} |" for name, how, v, cut in rows(r)],
    ]
    kinds = sorted({k for v in (r.get("voice_to_voice_ms") or {}).values() for k in v.get("per_kind", {})})
    if kinds:
        lines += ["", "p50 voice-to-voice per kind of turn (ms):", "", f"| path | {' | '.join(kinds)} |"]
        lines.append("|---|" + "---|" * len(kinds))
        for name, v in r["voice_to_voice_ms"].items():
            lines.append(f"| {name} | " + " | ".join(str(v["per_kind"].get(k, "—")) for k in kinds) + " |")
    return "\n".join(lines)


def write_docs(result: dict[str, Any], docs: Path, label: str = "realtime") -> None:
    """The figures into ``docs/benchmarks.md`` (their own block, ``label``) and ``benchmarks-LABEL.json``."""
    docs.mkdir(parents=True, exist_ok=True)
    (docs / f"benchmarks-{label}.json").write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n")
    put_block(
        docs / "benchmarks.md", f"<!-- bench:results:{label} -->", f"<!-- /bench:results:{label} -->", markdown(result)
    )
