"""Write the benchmark's figures into docs: a JSON file, a Markdown table and a plot of stage times."""

from __future__ import annotations

import json
import platform
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from voicechat.benchmark.machine import describe
from voicechat.turn_policy import END_OF_TURN_MODES

START = "<!-- bench:results -->"
END = "<!-- /bench:results -->"


def write_docs(result: dict[str, Any], docs: Path, label: str = "") -> None:
    """Refresh one machine's figures; ``label`` (e.g. "avx2") keeps each kind of CPU in its own block."""
    docs.mkdir(parents=True, exist_ok=True)
    stem = f"benchmarks-{label}" if label else "benchmarks"
    tag = f":{label} -->" if label else " -->"
    start, end = START.replace(" -->", tag), END.replace(" -->", tag)
    (docs / f"{stem}.json").write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n")
    plotted = plot(result, docs / f"{stem}.png")
    put_block(docs / "benchmarks.md", start, end, markdown(result, plotted, f"{stem}.png"))


def put_block(page: Path, start: str, end: str, body: str) -> None:
    """Replace what lies between the ``start`` and ``end`` markers of ``page`` (or append them)."""
    block = f"{start}\n{body}\n{end}"
    text = page.read_text() if page.is_file() else f"# Benchmarks\n\n{start}\n{end}\n"
    if start in text and end in text:
        text = text[: text.index(start)] + block + text[text.index(end) + len(end) :]
    else:
        text += "\n" + block + "\n"
    page.write_text(text)


def markdown(r: dict[str, Any], plotted: bool, image: str = "benchmarks.png") -> str:
    v, st, seq = r["voice_to_voice_ms"], r["stages_ms"], r["sequential_ms"]
    when = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    machine = f"{describe(r['machine'])}, " if "machine" in r else f"{platform.machine()} with {r['cpu_count']} CPUs, "
    lines = [
        f"Measured {when} on {machine}Python {platform.python_version()}, "
        f"backends {r['backends']}, {r['turns']} turns over {len(r['questions'])} questions, "
        f"end of turn after {r['end_of_turn_ms']} ms of silence.",
        "",
        "| figure | value | target |",
        "|---|---|---|",
        f"| voice_to_voice_ms p50 / p95 / max | {v.get('p50')} / {v.get('p95')} / {v.get('max')} | ≤ 600 / ≤ 900 |",
        f"| sequential pipeline p50 / p95 | {seq.get('p50')} / {seq.get('p95')} | — |",
        f"| sequential_ratio | {r['sequential_ratio']} | ≤ 0.35 |",
        f"| overhead_ms | {r['overhead_ms']} | ≤ 30 |",
        f"| frame_path_realtime_factor | {r['frame_path_realtime_factor']} | ≥ 100 |",
        f"| rss_mb / rss_growth_mb | {r['rss_mb']} / {r['rss_growth_mb']} | ≤ 1200 / ≤ 5 |",
        "",
        "Stage medians (ms): " + ", ".join(f"`{k}` {val}" for k, val in st.items()) + ".",
        "",
        "| turn | question | heard | reply | v2v ms | sequential ms | speculative |",
        "|---|---|---|---|---|---|---|",
    ]
    for i, t in enumerate(r["per_turn"], 1):
        lines.append(
            f"| {i} | {t['question']} | {t['transcript']} | {t['reply']} | {t['v2v_ms']} | "
            f"{t['sequential_ms']} | {'yes' if t['speculative'] else 'no'} |"
        )
    lines += turn_taking(r)
    if plotted:
        lines += ["", f"![stage times per turn]({image})"]
    return "\n".join(lines)


def turn_taking(r: dict[str, Any]) -> list[str]:
    """Semantic vs silence end of turn, measured in the same run (empty for older results)."""
    eot, paused = r.get("end_of_turn") or {}, r.get("paused_speech") or {}
    if not eot:
        return []
    lines = [
        "",
        f"End of turn, same run (signals: {' + '.join(eot.get('signals', []))}):",
        "",
        "| end of turn | v2v p50 / p95 (complete questions) | eot_ms p50 | false_cutoffs / pauses_total |",
        "|---|---|---|---|",
    ]
    for mode in END_OF_TURN_MODES:
        v, p = eot[mode]["voice_to_voice_ms"], paused.get(mode, {})
        cut = f"{p['false_cutoffs']} / {p['pauses_total']} ({p['false_cutoff_rate']:.1%})" if p else "—"
        lines.append(f"| {mode} | {v.get('p50')} / {v.get('p95')} | {eot[mode]['eot_ms_p50']} | {cut} |")
    kinds = [k for k in eot["semantic"].get("per_kind", {}) if k in eot["silence"].get("per_kind", {})]
    if kinds:
        lines += [
            "",
            "Per kind of turn (p50 voice-to-voice / p50 end-of-turn wait, ms):",
            "",
            "| kind | turns | semantic | silence |",
            "|---|---|---|---|",
        ]
        for kind in kinds:
            a, b = eot["semantic"]["per_kind"][kind], eot["silence"]["per_kind"][kind]
            lines.append(
                f"| {kind} | {a['turns']} | {a['v2v_p50']} / {a['eot_p50']} | {b['v2v_p50']} / {b['eot_p50']} |"
            )
        resumed = {m: eot[m].get("resumed", 0) + paused.get(m, {}).get("resumed", 0) for m in ("semantic", "silence")}
        said = ", ".join(f"{m} {n}" for m, n in resumed.items())
        lines += ["", f"Released turns the speaker went on after (resumed: merged and answered once): {said}."]
    lines += [
        "",
        f"semantic / silence voice-to-voice: p50 ratio {eot.get('p50_ratio')}, "
        f"median per-question ratio {eot.get('paired_ratio')} (target ≤ 0.8; false cut-offs ≤ 5 %).",
    ]
    return lines


def plot(r: dict[str, Any], path: Path) -> bool:
    """Stacked stage times per turn beside the measured voice-to-voice; False without matplotlib."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    turns = r["per_turn"]
    if not turns:
        return False
    xs = range(1, len(turns) + 1)
    fig, ax = plt.subplots(figsize=(9, 4.5))
    bottom = [0.0] * len(turns)
    stages = [
        ("started_after_eos_ms", "wait before work starts"),
        ("stt_ms", "STT"),
        ("line_end_ms", "end-of-turn score"),
        ("first_sentence_ms", "LLM to first piece"),
        ("tts_first_audio_ms", "TTS first audio"),
    ]
    for key, label in stages:
        vals = [float(t.get(key, 0.0)) for t in turns]
        ax.bar(xs, vals, bottom=bottom, label=label, width=0.6)
        bottom = [b + v for b, v in zip(bottom, vals, strict=True)]
    ax.plot(xs, [t["v2v_ms"] for t in turns], "k^-", label="voice-to-voice (measured)")
    ax.plot(xs, [t["sequential_ms"] for t in turns], "rv--", label="sequential pipeline")
    ax.axhline(600, color="grey", linestyle=":", label="600 ms target")
    ax.set_xlabel("turn")
    ax.set_ylabel("ms after the true end of speech")
    ax.set_title("voicechat offline: stage times per turn")
    ax.legend(fontsize=8, loc="upper right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True
