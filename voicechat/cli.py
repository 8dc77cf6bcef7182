"""The ``voicechat`` command: app, doctor, transcribe, say, turn (and bench).

Provider failures end with a one-line message and a non-zero exit, never a traceback.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Sequence
from typing import Any

from voicechat.config import LANGUAGES, LLM_CHOICES, Settings
from voicechat.errors import VoicechatError
from voicechat.process_tuning import tune_process


def _settings(args: argparse.Namespace) -> Settings:
    overrides: dict[str, Any] = {
        "stt": getattr(args, "stt", None),
        "llm": getattr(args, "llm", None),
        "tts": getattr(args, "tts", None),
        "language": getattr(args, "language", None),
    }
    return Settings.load(overrides)


def cmd_doctor(args: argparse.Namespace) -> int:
    from voicechat.backends import check_backends

    s = _settings(args)
    print(f"language: {s.language}")
    for kind in ("stt", "llm", "tts"):
        print(f"{kind}: {s.stage_line(kind)}")
    print()
    for st in check_backends(s):
        mark = "ok " if st.usable else "-- "
        print(f"{mark} {st.kind:<4} {st.name:<10} {st.reason}")
    return 0


def cmd_transcribe(args: argparse.Namespace) -> int:
    from voicechat.audio import check_size, read_audio
    from voicechat.backends import make_stt

    s = _settings(args)
    check_size(args.file, s.max_audio_bytes)
    audio = read_audio(args.file)
    stt = make_stt(s)
    print(asyncio.run(stt.transcribe(audio, language=s.language)))
    return 0


def cmd_say(args: argparse.Namespace) -> int:
    import numpy as np

    from voicechat.audio import write_wav
    from voicechat.backends import make_tts

    s = _settings(args)
    tts = make_tts(s)

    async def run() -> list[np.ndarray]:
        return [chunk async for chunk in tts.synthesize(args.text)]

    chunks = asyncio.run(run())
    pcm = np.concatenate(chunks) if chunks else np.zeros(0, dtype=np.int16)
    write_wav(args.out, pcm, tts.sample_rate)
    print(f"wrote {args.out} ({len(pcm) / tts.sample_rate:.2f} s at {tts.sample_rate} Hz) with {tts.name}")
    return 0


def cmd_turn(args: argparse.Namespace) -> int:
    from voicechat.audio import check_size, iter_wav_frames, write_wav
    from voicechat.backends import make_llm, make_stt, make_tts
    from voicechat.conversation_factory import create_conversation
    from voicechat.file_turns import run_turn_from_frames

    s = _settings(args)
    check_size(args.file, s.max_audio_bytes)
    frames, rate = iter_wav_frames(args.file)  # a file we cannot read fails here, before any model loads
    stt, llm, tts = make_stt(s), make_llm(s), make_tts(s)

    async def run() -> Any:
        conv = create_conversation(s, stt=stt, llm=llm, tts=tts, output_rate=args.rate)
        await conv.warm_up()
        try:
            return await run_turn_from_frames(conv, frames, rate, realtime=not args.fast)
        finally:
            await conv.aclose()

    result = asyncio.run(run())
    if args.out:
        write_wav(args.out, result.pcm, result.sample_rate)
    if args.json:
        print(json.dumps(result.as_dict(), ensure_ascii=False))
    else:
        print(f"you:       {result.transcript}")
        print(f"assistant: {result.reply}")
        if result.metrics:
            m = result.metrics
            print(
                f"stt {m.stt_ms} ms · llm first token {m.llm_first_token_ms} ms · "
                f"tts first audio {m.tts_first_audio_ms} ms · voice-to-voice {m.first_audio_ms} ms"
            )
    for err in result.errors:
        print(f"error: {err}", file=sys.stderr)
    if not result.transcript and not result.errors:
        print("error: no speech was heard in the file", file=sys.stderr)
        return 1
    return 1 if result.errors else 0


def cmd_app(args: argparse.Namespace) -> int:
    """``streamlit run`` on the packaged dashboard, in this process (Ctrl-C and signals reach Streamlit)."""
    import importlib.util

    # Look, don't import: importing streamlit-webrtc outside a running server logs warnings.
    missing = [m for m in ("streamlit", "streamlit_webrtc") if importlib.util.find_spec(m) is None]
    if missing:
        print(
            f"error: voicechat app needs the Streamlit extra ({missing[0]} is not installed): "
            'pip install "voicechat[streamlit]" (or "voicechat[all]" for the offline models too)',
            file=sys.stderr,
        )
        return 2
    import streamlit.web.cli as streamlit_cli

    from voicechat.streamlit.dashboard import SCRIPT

    sys.argv = ["streamlit", "run", str(SCRIPT), *args.streamlit_args]
    try:
        streamlit_cli.main(prog_name="streamlit")
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="voicechat", description="Talk to an AI with your voice.")
    sub = p.add_subparsers(dest="command", required=True)

    def backends(sp: argparse.ArgumentParser, *kinds: str) -> None:
        for kind in kinds:
            choices = LLM_CHOICES if kind == "llm" else ("auto", "local", "openai")  # llm: also "realtime"
            sp.add_argument(f"--{kind}", choices=choices, default=None)
        sp.add_argument("--language", choices=tuple(LANGUAGES), default=None)

    sp = sub.add_parser(
        "app",
        help="start the Streamlit voice chat dashboard (streamlit run options pass through)",
        description="Start the bundled Streamlit dashboard. Every other option goes to "
        "`streamlit run`, e.g. voicechat app --server.port 8502 --server.headless true",
    )
    sp.set_defaults(func=cmd_app, streamlit_args=[])

    sp = sub.add_parser("doctor", help="which backends are installed and usable")
    backends(sp)
    sp.set_defaults(func=cmd_doctor)

    sp = sub.add_parser("transcribe", help="print the transcript of an audio file")
    sp.add_argument("file")
    backends(sp, "stt")
    sp.set_defaults(func=cmd_transcribe)

    sp = sub.add_parser("say", help="synthesise speech to a WAV file")
    sp.add_argument("text")
    sp.add_argument("--out", required=True)
    backends(sp, "tts")
    sp.set_defaults(func=cmd_say)

    sp = sub.add_parser("turn", help="one whole voice turn from an audio file, through the real engine")
    sp.add_argument("file")
    sp.add_argument("--out", help="write the spoken reply here")
    sp.add_argument("--json", action="store_true", help="print one JSON object")
    sp.add_argument("--rate", type=int, default=48_000, help="reply sample rate (default 48000)")
    sp.add_argument("--fast", action="store_true", help="feed faster than real time")
    backends(sp, "stt", "llm", "tts")
    sp.set_defaults(func=cmd_turn)

    try:
        from voicechat.benchmark.bench_command import add_bench_parser
    except ImportError:
        pass
    else:
        add_bench_parser(sub)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    tune_process()  # the command's process serves voicechat alone (the app runs in it too)
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    if argv[:1] == ["app"] and argv[1:2] not in (["-h"], ["--help"]):
        # argparse cannot pass unknown options through a subcommand; Streamlit checks them itself.
        args = argparse.Namespace(func=cmd_app, streamlit_args=argv[1:])
    else:
        args = parser.parse_args(argv)
    try:
        return int(args.func(args))
    except VoicechatError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
