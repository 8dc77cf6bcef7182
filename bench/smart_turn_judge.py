"""Judge Smart Turn v3.2 (pipecat's audio end-of-turn model) against ``line_end`` on the same pauses.

Not a dependency: the model is read from a pipecat-ai wheel you download yourself::

    pip download pipecat-ai --no-deps -d /tmp/pipecat
    python bench/smart_turn_judge.py /tmp/pipecat/pipecat_ai-*.whl [trail_s]

Every pause of the tuning and bundled sets (the ones ``bench/turn_curve.py`` scored with Whisper and
Gemma, same detector, same order) is scored by Smart Turn on the last 8 s of audio up to the last
voiced window plus ``trail_s`` of the silence after it (pipecat hands it ~0.2 s). Printed: how often
it calls a pause inside a turn "complete" (> 0.5), and the AUC of each signal — the chance that a
finished turn scores higher than a pause the speaker went on after (1.0 separates them, 0.5 is a coin).
"""

from __future__ import annotations

import importlib.util
import json
import sys
import tempfile
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from turn_curve import bundled_set, make_tune_set

from voicechat.audio import SPEECH_RATE, read_audio
from voicechat.end_of_turn import SilenceSegmenter, SpeechPause, TurnConfig
from voicechat.vad import SileroVAD

HERE = Path(__file__).resolve().parent
INNER = "pipecat/audio/turn/smart_turn/"


def load_smart_turn(wheel: Path, folder: Path) -> Any:
    """The ONNX session and the numpy log-mel features, taken out of the wheel."""
    import onnxruntime as ort

    with zipfile.ZipFile(wheel) as z:
        z.extract(INNER + "data/smart-turn-v3.2-cpu.onnx", folder)
        z.extract(INNER + "_whisper_features.py", folder)
    spec = importlib.util.spec_from_file_location("smart_turn_features", folder / INNER / "_whisper_features.py")
    assert spec is not None and spec.loader is not None
    features = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(features)
    so = ort.SessionOptions()
    so.intra_op_num_threads = so.inter_op_num_threads = 1
    session = ort.InferenceSession(str(folder / INNER / "data/smart-turn-v3.2-cpu.onnx"), sess_options=so)

    def score(audio: np.ndarray) -> float:
        a = audio[-8 * SPEECH_RATE :]
        a = np.pad(a, (8 * SPEECH_RATE - len(a), 0)) if len(a) < 8 * SPEECH_RATE else a
        mel = features.compute_whisper_log_mel_features(a.astype(np.float32), do_normalize=True)[None]
        return float(session.run(None, {"input_features": mel})[0][0].item())

    return score


def auc(finished: list[float], inner: list[float]) -> float:
    wins = sum((f > i) + 0.5 * (f == i) for f in finished for i in inner)
    return round(wins / (len(finished) * len(inner)), 3)


def main() -> None:
    wheel, trail_s = Path(sys.argv[1]), float(sys.argv[2]) if len(sys.argv) > 2 else 0.2
    with tempfile.TemporaryDirectory() as d:
        score = load_smart_turn(wheel, Path(d))
        for which in ("tune", "report"):
            records = json.loads((HERE / f"turn_scores_{which}.json").read_text())
            files = make_tune_set(Path(d)) if which == "tune" else bundled_set()
            inner: list[dict[str, Any]] = []
            finished: list[dict[str, Any]] = []
            for f, rec in zip(files, records, strict=True):
                audio = np.concatenate([read_audio(f["file"], SPEECH_RATE), np.zeros(SPEECH_RATE * 3, np.float32)])
                seg = SilenceSegmenter(SileroVAD(), TurnConfig(end_of_turn_ms=2500, pause_ms=64))
                events = [e for i in range(0, len(audio), 320) for e in seg.feed(audio[i : i + 320])]
                pauses = [e for e in events if isinstance(e, SpeechPause)]
                for ev, p in zip(pauses, rec["scored"], strict=True):
                    p["smart"] = score(audio[: ev.last_voiced + int(trail_s * SPEECH_RATE)])
                    if p["final"]:
                        finished.append(p)
                    elif p["gap_ms"] >= 250:
                        inner.append(p)
            print(
                f"{which} set: {len(inner)} pauses inside turns, Smart Turn calls "
                f"{sum(p['smart'] > 0.5 for p in inner)} complete; {len(finished)} finished turns, "
                f"{sum(p['smart'] > 0.5 for p in finished)} complete. AUC Smart Turn "
                f"{auc([p['smart'] for p in finished], [p['smart'] for p in inner])}, line_end "
                f"{auc([p['line_end'] for p in finished], [p['line_end'] for p in inner])}"
            )


if __name__ == "__main__":
    main()
