"""The WebRTC component: mic frames into the session, reply PCM out, rendered safely on every run.

**The orphan-context trap.** streamlit-webrtc 0.79 stores, on its context, the session's
``script_run_count`` seen when ``webrtc_streamer(key=...)`` last rendered. If a later run reads
a count more than one above it, the library decides the component was not rendered for a run
(a page switch in a multi-page app), logs "Context for key=… was not rendered for 1 script
runs; resetting stale state" and stops the live worker — the browser stays "connected" but the
server never sees another frame. Two things make the counts jump:

1. A full run that completes without calling ``webrtc_streamer`` (it sits in a fragment, behind
   a condition, or after code that raised or called ``st.stop()``). The page avoids this by
   rendering it unconditionally, at top level, with one fixed key, before anything that can
   fail, and by catching exceptions in the rest of the page so every run ends normally.
2. A race inside Streamlit: ``script_run_count`` is incremented on the server's event loop when
   the previous run's ``script_finished`` message is *sent*, while the next run (queued while
   the previous one was finishing, which happens constantly during WebRTC signalling) may
   already be executing on the script thread. That run reads the stale count, stores it, and
   the run after it sees a gap of two: reset. :class:`RunCountBarrier` closes this window by
   letting the server's event loop settle the previous run's message first (a few
   milliseconds, bounded).

The barrier reads the count and reaches the event loop through streamlit-webrtc's public
``session_info`` and ``eventloop`` helpers; it patches nothing in either library.

Threads: :func:`render_streamer` runs on the script thread; the sink callback
(``VoiceSession.push``), its ``on_ended`` and :class:`DisconnectWatch` run on aiortc's loop; the
PCM source is pulled on aiortc's loop and pushed from the engine thread (see
:mod:`voicechat.streamlit.browser_session`).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import os
import time
from typing import Any, cast

from streamlit.runtime.runtime import Runtime
from streamlit_webrtc import (
    Translations,
    WebRtcMode,
    WebRtcStreamerContext,
    create_audio_sink_track,
    create_pcm_audio_source_track,
    webrtc_streamer,
)
from streamlit_webrtc.eventloop import get_global_event_loop
from streamlit_webrtc.session_info import get_script_run_count, get_session_id, get_this_session_info

from voicechat.process_tuning import freeze_heap_once
from voicechat.streamlit.browser_session import OUTPUT_RATE, VoiceSession
from voicechat.streamlit.keys import DEFAULT_KEYS, StreamerKeys
from voicechat.streamlit.speech_transport import install as install_speech_transport


class RunCountBarrier:
    """Makes each run read a settled ``script_run_count`` before ``webrtc_streamer`` does.

    How it knows when to wait: if the previous full run that rendered the streamer ran to its
    last line (``run_completed``) and the count has not moved since that run read it, that run's
    ``script_finished`` message is still on the server's event loop. It then ends one of two
    ways: Streamlit sends it (the count goes up) or, if it was still queued when this run
    started, turns it into "finished early for rerun" (the count never moves). So the barrier
    runs a small coroutine on that loop: when its first step runs, this run's own start has
    been handled and the message's fate is sealed; it then yields one loop iteration at a
    time — the runtime sends one message of its batch per iteration — until the count moves
    or ``max_rounds`` iterations pass. Typically that takes a few milliseconds.

    Script thread only (it blocks it, briefly). One per browser session, kept in
    ``st.session_state``; plain attributes, so updating them is no Streamlit rerun point.
    ``run_completed`` must be the last statement of every full run.
    """

    def __init__(self, max_rounds: int = 64, max_wait_s: float = 1.0) -> None:
        self.max_rounds = max_rounds
        self.max_wait_s = max_wait_s
        self.enabled = os.environ.get("VOICECHAT_WEBRTC_BARRIER", "1") != "0"
        self._seq = 0  # full runs that reached the streamer
        self._rendered_at: int | None = None  # script_run_count seen by the last of them
        self._completed_seq = -1  # the last of them that ran to the end
        self.waits = 0  # runs that had to wait for the event loop
        self.counted = 0  # ... and saw the previous run counted while waiting (a stale read avoided)
        self.max_rounds_used = 0
        self.max_wait_ms = 0.0

    async def settle(self, info: Any, seen: int) -> int:
        """On the event loop: yield one iteration at a time until the count moves; returns the rounds used."""
        for rounds in range(1, self.max_rounds + 1):
            await asyncio.sleep(0)
            if get_script_run_count(info) != seen:
                return rounds
        return 0

    def before_render(self) -> int | None:
        """Wait until the previous completed run is settled; returns the count the library will see."""
        info = get_this_session_info()
        count = get_script_run_count(info) if info is not None else None
        if info is None or count is None or not self.enabled:
            return count
        if self._rendered_at is not None and self._completed_seq == self._seq and count == self._rendered_at:
            self.waits += 1
            t0 = time.monotonic()
            with contextlib.suppress(concurrent.futures.TimeoutError, RuntimeError):
                future = asyncio.run_coroutine_threadsafe(self.settle(info, count), get_global_event_loop())
                try:
                    rounds = future.result(self.max_wait_s)
                finally:
                    future.cancel()  # a no-op when done; stops the coroutine after a timeout
                if rounds:
                    self.counted += 1
                    self.max_rounds_used = max(self.max_rounds_used, rounds)
            self.max_wait_ms = max(self.max_wait_ms, (time.monotonic() - t0) * 1000)
            count = get_script_run_count(info)
        self._seq += 1
        self._rendered_at = count
        return count

    def counters(self) -> dict[str, float]:
        return {
            "barrier_waits": self.waits,
            "barrier_counted": self.counted,
            "barrier_max_rounds": self.max_rounds_used,
            "barrier_max_wait_ms": round(self.max_wait_ms, 1),
        }

    def run_completed(self) -> None:
        """The full run that rendered the streamer reached its last line (Streamlit may count it)."""
        self._completed_seq = self._seq


class DisconnectWatch:
    """aiortc loop: stop the engine of a browser that left without closing its WebRTC connection.

    A closing tab usually says goodbye (RTCP BYE / DTLS close) and the mic sink's ``on_ended``
    fires at once, but not always (a killed or busy renderer): aiortc then notices only when
    ICE consent expires, ~30 s later. Streamlit, though, sees the tab's websocket close at once.
    So every ``interval`` s, while the engine runs: if this session's websocket is gone (not an
    active Streamlit session) AND no mic frame (one per 20 ms) arrived for ``stall_s``, the
    connection is over and :meth:`VoiceSession.connection_ended` stops the engine. Both must hold: a websocket
    blip with the call still up keeps sending frames, and a network stall with the tab still
    open keeps its websocket. The watch stops itself once there is nothing left to watch.

    :meth:`track_ended` is the fast path (the sink's ``on_ended``, ~0.1 s after a tab closes). It
    acts only when the websocket is gone too: ``on_ended`` runs in the track coroutine's
    ``finally``, so an old track that is cancelled or collected late may fire it after the next
    start made a new engine, and stopping that one would be wrong. A stop button press is the
    page's job (``webrtc_changed``), with the websocket still up.
    """

    def __init__(self, session: VoiceSession, session_id: str, interval: float = 0.1, stall_s: float = 0.5) -> None:
        self.session, self.session_id, self.interval, self.stall_s = session, session_id, interval, stall_s
        self.enabled = os.environ.get("VOICECHAT_DISCONNECT_WATCH", "1") != "0"  # "0": off (to test without it)

    def start(self) -> None:
        """Script thread: start ticking on the event loop (once per session; the page calls it every run)."""
        if self.session.watching or not self.enabled:
            return
        self.session.watching = True
        get_global_event_loop().call_soon_threadsafe(self.tick)

    def websocket_gone(self) -> bool:
        return not Runtime.instance().is_active_session(self.session_id)  # thread-safe per Streamlit

    def track_ended(self) -> None:
        """The mic sink track ended (aiortc's loop, or whichever thread collected an old track)."""
        if self.enabled and self.websocket_gone():
            self.session.connection_ended("track-ended")

    def tick(self) -> None:
        session = self.session
        websocket_gone = self.websocket_gone()
        if session.closed or (websocket_gone and session.runner is None):
            session.watching = False  # nothing left to stop; a reconnect's next run starts a new watch
            return
        stalled = session.last_frame_at > 0 and time.monotonic() - session.last_frame_at > self.stall_s
        if websocket_gone and stalled and session.webrtc_active:
            session.connection_ended("websocket-gone")
        get_global_event_loop().call_later(self.interval, self.tick)


def settle_heap(session: VoiceSession) -> None:
    """Script thread: when the first engine is ready, freeze the loaded models out of the garbage
    collector's full passes, if the process asked for that (:func:`voicechat.tune_process`, which
    the bundled app calls; see :func:`voicechat.process_tuning.freeze_heap_once` for why)."""
    runner = session.runner
    if runner is not None and runner.ready:
        freeze_heap_once()


def media_constraints(echo_cancellation: bool) -> dict[str, Any]:
    """Audio only; the browser's echo canceller, noise suppressor and AGC switched together."""
    return {
        "audio": {
            "echoCancellation": echo_cancellation,
            "noiseSuppression": echo_cancellation,
            "autoGainControl": echo_cancellation,
        },
        "video": False,
    }


def render_streamer(
    session: VoiceSession,
    barrier: RunCountBarrier,
    *,
    rtc_configuration: dict[str, Any] | None,
    echo_cancellation: bool,
    translations: dict[str, str],
    keys: StreamerKeys = DEFAULT_KEYS,
    refuse: bool = False,
) -> WebRtcStreamerContext:
    """Render the SENDRECV component. Call exactly once on EVERY full run, outside fragments, same keys.

    ``refuse``: make the browser hang up now (the session limit); ``None`` otherwise, so the
    user's Start and Stop buttons stay in charge.
    """
    install_speech_transport()  # aiortc's Opus and RTP path tuned for one voice (VOICECHAT_SPEECH_TRANSPORT)
    pcm_out = create_pcm_audio_source_track(key=keys.source, sample_rate=OUTPUT_RATE)
    session.outlet.attach(pcm_out)  # a new source after each WebRTC session; the engine pushes here
    # A closed tab: no script run will see it; the watch (and the sink's on_ended) stop its engine.
    watch = DisconnectWatch(session, get_session_id())
    mic = create_audio_sink_track(session.push, key=keys.sink, on_ended=watch.track_ended)
    watch.start()
    barrier.before_render()
    return webrtc_streamer(
        key=keys.streamer,
        mode=WebRtcMode.SENDRECV,
        rtc_configuration=rtc_configuration,
        media_stream_constraints=media_constraints(echo_cancellation),
        sink_audio_track=mic,
        source_audio_track=pcm_out.track,
        sendback_video=False,
        translations=cast(Translations, translations),
        audio_html_attrs={"autoPlay": True, "controls": False, "style": {"display": "none"}},
        desired_playing_state=False if refuse else None,
    )
