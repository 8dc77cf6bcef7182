"""What listening in ko/ja/zh offline costs: multilingual Whisper base vs tiny.en on espeak-ng speech.

CPU time per clip (``time.process_time``, which a loaded machine inflates far less than wall time),
median of three clips per language, for the sized encoder window the engine uses and for
faster-whisper's fixed 30 s window; what each model heard is printed beside it. Run it under the
shared benchmark lock:

    flock /tmp/voicechat-bench.lock python bench/multilingual_stt_cost.py   # also writes multilingual_stt_cost.json
"""

from __future__ import annotations

import json
import statistics
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

import voicechat.stt.local as local_stt
from voicechat.audio import SPEECH_RATE, read_audio
from voicechat.models import multilingual_whisper_path, whisper_model_path
from voicechat.stt.local import LocalSTT

CLIPS = {
    "en-US": ("en-us", ["What is the capital of Italy?", "Tell me a short joke.", "How far away is the moon?"]),
    "ko-KR": ("ko", ["한국의 수도는 서울입니다.", "오늘 날씨가 좋네요.", "지금 몇 시예요?"]),
    "ja-JP": ("ja", ["にほんのしゅとは、とうきょうです。", "きょうは、いいてんきですね。", "いま、なんじですか。"]),
    "zh-CN": ("cmn", ["中国的首都是北京。", "今天天气很好。", "现在几点了？"]),
}


def loadavg() -> str:
    return Path("/proc/loadavg").read_text().strip()


def main() -> None:
    from voicechat import tune_process

    tune_process()  # measured in a process tuned as the bundled app's is
    base, tiny = LocalSTT(multilingual_whisper_path()), LocalSTT(whisper_model_path())
    out: dict[str, Any] = {"loadavg_before": loadavg(), "rows": []}
    for lang, (voice, texts) in CLIPS.items():
        models = [("base", base)] + ([("tiny.en", tiny)] if lang == "en-US" else [])
        for name, model in models:
            for window in ("sized", "full"):
                local_stt.SHORT_CLIP_S = 8.0 if window == "sized" else 0.0
                cpu, audio_s, heard = [], 0.0, []
                for i, text in enumerate(texts):
                    wav = Path(tempfile.gettempdir()) / f"vc_{lang}_{i}.wav"
                    subprocess.run(["espeak-ng", "-v", voice, "-w", str(wav), text], check=True)
                    audio = np.concatenate([np.zeros(4800, np.float32), read_audio(wav), np.zeros(8000, np.float32)])
                    model.transcribe_sync(audio, lang)  # warm
                    t0 = time.process_time()
                    heard.append(model.transcribe_sync(audio, lang))
                    cpu.append(time.process_time() - t0)
                    audio_s += len(audio) / SPEECH_RATE
                row = {
                    "language": lang,
                    "model": name,
                    "window": window,
                    "cpu_ms_median": round(1000 * statistics.median(cpu)),
                    "cpu_s_per_audio_s": round(sum(cpu) / audio_s, 3),
                    "heard": heard,
                    "said": texts,
                }
                out["rows"].append(row)
                print(json.dumps(row, ensure_ascii=False), flush=True)
    out["loadavg_after"] = loadavg()
    Path("multilingual_stt_cost.json").write_text(json.dumps(out, ensure_ascii=False, indent=1))
    print(out["loadavg_before"], "→", out["loadavg_after"])


if __name__ == "__main__":
    main()
