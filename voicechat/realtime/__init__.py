"""Speech to speech: one model (OpenAI's Realtime API) hears the turn and speaks the reply.

voicechat still decides when a turn ends (VAD and the semantic end of turn) and sends each finished
turn over one WebSocket; the reply's audio and its transcript come back as the engine's usual events.
Nothing here imports ``openai`` until a connection is opened.
"""
