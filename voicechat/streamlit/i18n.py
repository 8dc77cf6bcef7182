"""UI labels in Korean and English, chosen by the conversation language.

ja-JP and zh-CN conversations get English labels: the labels are few, but a wrong translation
is worse than a clear English one. Every label is our own text, never user text, so the page
may render them as Markdown.
"""

from __future__ import annotations

from typing import Final

from voicechat.events import State
from voicechat.status_lights import NAMES

EN: Final[dict[str, str]] = {
    "title": "🎙️ Real-time voice chat",
    "subtitle": "Speak; your words appear as you talk, and the reply is spoken sentence by sentence. "
    "Talk over it (or press stop) to interrupt.",
    "language": "Language",
    "start": "Start conversation",
    "stop": "Stop listening",
    "select_device": "Select device",
    "media_api_not_available": "The media API is not available in this browser",
    "device_ask_permission": "Please allow microphone access",
    "device_not_available": "No microphone found",
    "device_access_denied": "Microphone access was denied",
    "mute_microphone": "Mute microphone",
    "unmute_microphone": "Unmute microphone",
    "select_microphone": "Select microphone",
    "stop_speaking": "Stop voice",
    "clear": "Clear conversation",
    "listening": NAMES["en"][State.LISTENING],
    "thinking": NAMES["en"][State.THINKING],
    "speaking": NAMES["en"][State.SPEAKING],
    "you": "You",
    "assistant": "Assistant",
    "interim": "Hearing",
    "empty": 'Press "Start conversation" and speak! 🎤',
    "type_message": "…or type a message",
    "loading": "Loading the speech and language models (first time only)…",
    "loaded": "Models ready",
    "load_failed": "The engine could not start",
    "stopped": 'Conversation stopped — press "Start conversation" to talk again.',
    "interrupted": "(interrupted)",
    "cut_off": "(cut off: the provider failed mid-reply)",
    "errors": "Problems",
    "download_json": "Download transcript (JSON)",
    "download_md": "Download transcript (Markdown)",
    "prepare_audio": "Prepare audio downloads",
    "download_audio": "Download conversation audio (WAV)",
    "download_replies": "Download each side and every reply (ZIP)",
    "recording_note": "Recorded {seconds} s — you on the left, the assistant on the right; kept in memory only, "
    "up to {limit} min.",
    "recording_full": "Recording stopped at the {limit}-minute limit ({seconds} s kept; VOICECHAT_RECORD_MAX_S).",
    "recording_empty": "Recording is on: the audio will be ready to download after you speak.",
    "record_audio": "Record the conversation's audio",
    "record_help": "Kept in this server's memory for this session only (never on disk) until you download it.",
    "latency": "Latency per turn (ms)",
    "median": "median",
    "no_turns": "No completed turns yet.",
    "settings": "Settings",
    "backends": "Backends",
    "backend_live": "What can run here",
    "stt": "Speech to text",
    "llm": "Reply model",
    "tts": "Text to speech",
    "browser_stt": "browser (Web Speech API)",
    "openai_models": "OpenAI models",
    "stt_model": "STT model",
    "llm_model": "Chat model",
    "tts_model": "TTS model",
    "realtime_model": "Realtime (speech-to-speech) model",
    "realtime_turns": "Who ends a realtime turn",
    "realtime_turns_local": "voicechat (VAD + end of turn)",
    "realtime_turns_help": "voicechat keeps pauses inside a turn (docs/realtime.md); server_vad ends a turn "
    "after 500 ms of silence, semantic_vad on the server's own model",
    "voice": "Voice",
    "speed": "Speech speed",
    "system_prompt": "System prompt (empty = default for the language)",
    "vad": "Voice detection sensitivity",
    "vad_help": "Higher hears quieter speech but also more noise (VAD threshold = 1 − sensitivity).",
    "echo": "Browser echo cancellation, noise suppression and auto gain",
    "echo_help": "Keep on with speakers, or the assistant hears itself. Applies at the next start.",
    "half_duplex": "Half duplex: ignore the microphone while the reply plays",
    "half_duplex_help": "For speakers without echo cancellation; you can then interrupt only with the stop button.",
    "key_set": "OpenAI key: set on the server (never sent to the browser)",
    "key_unset": "OpenAI key: not set — offline models",
    "session_limit": "This server is at its limit of {limit} live voice conversation(s), so the microphone "
    "was not connected. Try again in a few minutes; you can still type below.",
    "browser_fallback": "Browser speech recognition is not available here ({reason}); "
    "using server speech recognition instead.",
    "browser_listening": "Browser speech recognition is on.",
}

KO: Final[dict[str, str]] = {
    **EN,
    "title": "🎙️ 실시간 음성 대화",
    "subtitle": "말하면 바로 글자로 보이고, 답변은 문장마다 바로 읽어 줍니다. "
    "말을 끊으려면 그냥 말하거나 중지를 누르세요.",
    "language": "언어",
    "start": "대화 시작",
    "stop": "듣기 중지",
    "select_device": "장치 선택",
    "media_api_not_available": "이 브라우저에서는 미디어 API를 사용할 수 없습니다",
    "device_ask_permission": "마이크 사용을 허용해 주세요",
    "device_not_available": "마이크를 찾을 수 없습니다",
    "device_access_denied": "마이크 접근이 거부되었습니다",
    "mute_microphone": "마이크 끄기",
    "unmute_microphone": "마이크 켜기",
    "select_microphone": "마이크 선택",
    "stop_speaking": "음성 중지",
    "clear": "대화 지우기",
    "listening": NAMES["ko"][State.LISTENING],
    "thinking": NAMES["ko"][State.THINKING],
    "speaking": NAMES["ko"][State.SPEAKING],
    "you": "나",
    "assistant": "AI",
    "interim": "듣는 중",
    "empty": '"대화 시작" 버튼을 클릭하고 말해보세요! 🎤',
    "type_message": "…또는 메시지를 입력하세요",
    "loading": "음성·언어 모델을 불러오는 중입니다 (처음 한 번만)…",
    "loaded": "모델 준비 완료",
    "load_failed": "엔진을 시작할 수 없습니다",
    "stopped": '대화가 중지되었습니다 — 다시 말하려면 "대화 시작"을 누르세요.',
    "interrupted": "(중단됨)",
    "cut_off": "(잘림: 응답 도중 제공자 오류)",
    "errors": "문제",
    "download_json": "대화 내용 내려받기 (JSON)",
    "download_md": "대화 내용 내려받기 (Markdown)",
    "prepare_audio": "음성 파일 준비",
    "download_audio": "대화 음성 내려받기 (WAV)",
    "download_replies": "양쪽 음성과 답변별 음성 내려받기 (ZIP)",
    "recording_note": "{seconds}초 녹음됨 — 왼쪽은 나, 오른쪽은 AI. 메모리에만 보관되며 최대 {limit}분입니다.",
    "recording_full": "{limit}분 제한에 도달해 녹음을 멈췄습니다 ({seconds}초 보관; VOICECHAT_RECORD_MAX_S).",
    "recording_empty": "녹음이 켜져 있습니다. 말을 하면 내려받을 수 있습니다.",
    "record_audio": "대화 음성 녹음",
    "record_help": "내려받기 전까지 이 세션의 서버 메모리에만 보관됩니다 (디스크에 저장하지 않음).",
    "latency": "턴별 지연 시간 (ms)",
    "median": "중앙값",
    "no_turns": "아직 완료된 턴이 없습니다.",
    "settings": "설정",
    "backends": "백엔드",
    "backend_live": "여기서 사용할 수 있는 것",
    "stt": "음성 인식",
    "llm": "응답 모델",
    "tts": "음성 합성",
    "browser_stt": "브라우저 (Web Speech API)",
    "openai_models": "OpenAI 모델",
    "stt_model": "STT 모델",
    "llm_model": "대화 모델",
    "tts_model": "TTS 모델",
    "realtime_model": "실시간 음성 모델",
    "realtime_turns": "실시간 턴 종료 판단",
    "realtime_turns_local": "voicechat (VAD + 발화 종료 판단)",
    "realtime_turns_help": "voicechat은 말하는 도중의 쉼을 기다립니다 (docs/realtime.md). server_vad는 "
    "500 ms 침묵 후 턴을 끝내고, semantic_vad는 서버의 모델이 판단합니다",
    "voice": "목소리",
    "speed": "말하기 속도",
    "system_prompt": "시스템 프롬프트 (비우면 언어별 기본값)",
    "vad": "음성 감지 민감도",
    "vad_help": "높을수록 작은 소리도 듣지만 잡음도 더 듣습니다 (VAD 임계값 = 1 − 민감도).",
    "echo": "브라우저 에코 제거·잡음 억제·자동 음량",
    "echo_help": "스피커를 쓸 때는 켜 두세요. 다음 시작부터 적용됩니다.",
    "half_duplex": "반이중: 답변이 나오는 동안 마이크 무시",
    "half_duplex_help": "에코 제거가 없는 스피커용입니다. 이때는 중지 버튼으로만 끊을 수 있습니다.",
    "key_set": "OpenAI 키: 서버에 설정됨 (브라우저로 보내지 않음)",
    "key_unset": "OpenAI 키: 없음 — 오프라인 모델 사용",
    "session_limit": "서버가 가득 찼습니다: 이미 최대치인 {limit}개의 음성 대화가 진행 중입니다. "
    "잠시 후 다시 시도해 주세요. 아래에 입력해서 대화할 수는 있습니다.",
    "browser_fallback": "이 환경에서는 브라우저 음성 인식을 쓸 수 없어 ({reason}) 서버 음성 인식으로 전환했습니다.",
    "browser_listening": "브라우저 음성 인식이 켜져 있습니다.",
}

LABELS: Final[dict[str, dict[str, str]]] = {"en": EN, "ko": KO}


def ui_language(language: str) -> str:
    """The label set for a conversation language code such as ``ko-KR``."""
    return "ko" if language.lower().startswith("ko") else "en"


def labels(language: str) -> dict[str, str]:
    """All labels for a conversation language (English for everything but Korean)."""
    return LABELS[ui_language(language)]


def translations(language: str) -> dict[str, str]:
    """streamlit-webrtc's button and device texts in the UI language."""
    t = labels(language)
    keys = (
        "start",
        "stop",
        "select_device",
        "media_api_not_available",
        "device_ask_permission",
        "device_not_available",
        "device_access_denied",
        "mute_microphone",
        "unmute_microphone",
        "select_microphone",
    )
    return {k: t[k] for k in keys}
