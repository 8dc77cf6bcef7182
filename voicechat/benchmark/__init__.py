"""``voicechat bench``: voice-to-voice latency through the real engine, against a sequential pipeline."""
