"""Two app replicas behind nginx with sticky sessions: the deployment in deploy/, run here without containers.

Two real ``streamlit run`` replicas on 127.0.0.1 and Debian's nginx in front, configured by the
same ``deploy/nginx-conf.sh`` that compose.yaml and deploy/run_replicas.sh use, run as a plain
process with its own prefix in a temp dir. Two headless Chromiums with a fake microphone speaking a
question open the proxy's address. Checked: both conversations get a spoken reply; they landed on
different replicas (each replica's own stats hook saw exactly one browser session, and each
browser's cookie names its replica); each page's websocket stayed on its replica across reruns,
including a forced reconnect (nginx reloaded, which closes the old websockets: the page's next
typed message is handled by the same session on the same replica); each conversation's end of
turn was scored on the scoring server both replicas share; and a third browser, past a replica's
``VOICECHAT_MAX_SESSIONS=1``, is told so in its page.

The stages are on the loopback OpenAI-format server (no model loads in the replicas on the 2 shared
cores), and the end of turn is scored on one llama.cpp ``llama-server`` as deploy/ runs it: what is
under test is the routing, the transport through the proxy and the shared scoring server, not the
models' answers.
"""

from __future__ import annotations

import contextlib
import re
import shutil
import signal
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import require
from tests.streamlit_harness import ROOT, AppServer, chromium, free_port, inbound_audio, press, wait_for
from voicechat.streamlit.i18n import labels
from voicechat_bench_kit import llama_cpp_server
from voicechat_bench_kit.openai_loopback_server import FakeOpenAIServer

pytestmark = [pytest.mark.slow, pytest.mark.browser]

QUESTION = "What is the capital of Italy?"
REPLY = "Rome is the capital of Italy."
TYPED = "And what about France?"
ARTIFACTS = ROOT / "test-artifacts"


class Nginx:
    """nginx in the foreground, unprivileged, with ``deploy/nginx-conf.sh``'s config and its own state dir."""

    def __init__(self, state: Path, replica_ports: list[int]) -> None:
        self.state = state
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/"
        self.conf = state / "nginx.conf"
        addrs = [f"127.0.0.1:{p}" for p in replica_ports]
        self.replica_of = {f"r{i}": port for i, port in enumerate(replica_ports, 1)}
        state.mkdir(parents=True, exist_ok=True)
        script = ROOT / "deploy" / "nginx-conf.sh"
        self.conf.write_text(
            subprocess.run(
                ["sh", str(script), str(self.port), str(state), *addrs], check=True, capture_output=True, text=True
            ).stdout
        )
        self.proc: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> Nginx:
        cmd = ["nginx", "-c", str(self.conf), "-e", str(self.state / "error.log"), "-g", "daemon off;"]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
        wait_for(self._up, 20, what=f"nginx on port {self.port} (log: {self.state / 'error.log'})")
        return self

    def _up(self) -> bool:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise RuntimeError(f"nginx exited with {self.proc.returncode}: {self.error_log()}")
        # Straight to the port, so this probe takes no turn of the proxy's round robin.
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", self.port), 1):
            return True
        return False

    def reload(self) -> None:
        """What an operator does on a config change: SIGHUP; the old worker closes its websockets within 5 s."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGHUP)

    def __exit__(self, *exc: object) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGQUIT)  # graceful stop
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)

    def access_log(self) -> list[dict[str, str]]:
        """Every logged request: path, status, the replica that answered, the cookie it came with."""
        rows = []
        path = self.state / "access.log"
        pattern = re.compile(r'"(\S+) (\S+) [^"]*" (\d+) replica=(\S*) upstream=(.*) cookie=(\S*)$')
        for line in path.read_text().splitlines() if path.exists() else []:
            m = pattern.search(line)
            if m:
                _method, target, status, replica, upstream, cookie = m.groups()
                rows.append(
                    {"path": target, "status": status, "replica": replica, "upstream": upstream, "cookie": cookie}
                )
        return rows

    def error_log(self) -> str:
        path = self.state / "error.log"
        return path.read_text(errors="replace") if path.exists() else ""


@pytest.fixture(scope="module")
def fake_mic(make_speech) -> Path:  # type: ignore[no-untyped-def]
    """The question at 48 kHz, then 4 s of silence so the turn ends (Chromium loops the file)."""
    require("chromium")
    require("nginx")
    ARTIFACTS.mkdir(exist_ok=True)
    return Path(make_speech(QUESTION, rate=48000, channels=1, lead_s=0.5, trail_s=4.0))


@contextlib.contextmanager
def deployment(tmp_path: Path, provider: FakeOpenAIServer) -> Iterator[tuple[list[AppServer], Nginx]]:
    """Two replicas as deploy/run_replicas.sh starts them (one cookie secret, a session limit each, the
    end of turn scored on one llama.cpp ``llama-server`` with a slot per call), nginx in front."""
    from voicechat.models import gemma_gguf_path

    binary = llama_cpp_server.llama_server_binary()
    if binary is None:
        pytest.fail("llama.cpp's llama-server is not built: bash scripts/build_llama_server.sh (install.sh --dev does)")
    with llama_cpp_server.running(
        gemma_gguf_path(), threads=1, llama_server=binary, slots=2, log=tmp_path / "score.log"
    ) as score:
        env = {
            "OPENAI_BASE_URL": provider.base_url,
            "VOICECHAT_STT": "openai",
            "VOICECHAT_LLM": "openai",
            "VOICECHAT_TTS": "openai",
            "VOICECHAT_INTERIM_STT": "off",
            "VOICECHAT_END_OF_TURN": "semantic",
            "VOICECHAT_LINE_END_BASE_URL": score.base_url,  # no end-of-turn model in the replicas
            "VOICECHAT_MAX_SESSIONS": "1",
            "STREAMLIT_SERVER_COOKIE_SECRET": "the-same-secret-on-every-replica",
        }
        replicas = [AppServer(tmp_path / f"stats{i}.jsonl", tmp_path / f"replica{i}.log", **env) for i in (1, 2)]
        with replicas[0], replicas[1], Nginx(tmp_path / "nginx", [r.port for r in replicas]) as proxy:
            yield replicas, proxy


def _replica_cookie(context: Any) -> str:
    return next((c["value"] for c in context.cookies() if c["name"] == "voicechat_replica"), "")


def _ws_upstreams(proxy: Nginx, cookie: str) -> set[str]:
    """Where the websockets of the browser with ``cookie`` went (logged when each one closed)."""
    return {r["upstream"] for r in proxy.access_log() if r["path"] == "/_stcore/stream" and r["cookie"] == cookie}


def test_two_replicas_behind_nginx_keep_each_browser_on_its_own(fake_mic: Path, tmp_path: Path) -> None:
    from playwright.sync_api import sync_playwright

    refusal = labels("en-US")["session_limit"].format(limit=1)
    with FakeOpenAIServer(api_key=None) as provider:
        provider.transcript = QUESTION
        provider.chat_deltas = ("Rome is", " the capital", " of Italy.")
        with (
            deployment(tmp_path, provider) as (replicas, proxy),
            sync_playwright() as pw,
            chromium(pw, fake_mic) as ctx_a,
            chromium(pw, fake_mic) as ctx_b,
        ):
            pages = [ctx_a.new_page(), ctx_b.new_page()]

            def pump(s: float) -> None:
                pages[0].wait_for_timeout(s * 1000)

            try:
                # New browsers, one after the other: the proxy's round robin puts them on different replicas.
                for page in pages:
                    page.goto(proxy.url, timeout=180_000)
                cookies = [_replica_cookie(ctx_a), _replica_cookie(ctx_b)]
                assert sorted(cookies) == ["r1", "r2"], cookies
                mine = [replicas[int(c[1:]) - 1] for c in cookies]  # the replica each cookie names
                for server in mine:
                    wait_for(lambda s=server: s.by_session(), 120, what="the page's session on its replica", sleep=pump)
                for page in pages:
                    press(page, "Start conversation")

                # Both conversations get an answer, each from the replica its browser is on.
                for server in mine:
                    wait_for(
                        lambda s=server: any(r.get("assistant_lines") for r in s.by_session().values()),
                        180,
                        what=f"a reply on the replica at port {server.port}",
                        sleep=pump,
                    )
                for page in pages:
                    wait_for(
                        lambda p=page: REPLY.lower() in p.inner_text("body").lower(),
                        60,
                        what="the reply on the page",
                        sleep=pump,
                    )
                    wait_for(
                        lambda p=page: [s for s in inbound_audio(p) if s["energy"] > 0],
                        60,
                        what="reply audio at the browser",
                        sleep=pump,
                    )
                sessions = [next(iter(server.by_session())) for server in mine]
                # The question's end was scored as finished, on the one scoring server both replicas share.
                for server, sid in zip(mine, sessions, strict=True):
                    scores = server.by_session()[sid].get("line_end_scores", [])
                    assert any(p is not None and p > 0.5 for p in scores), (server.port, scores)
                for server in replicas:  # one browser session each: nobody's websocket went to the other
                    assert len(server.by_session()) == 1, server.by_session()
                reruns = [
                    len([r for r in s.stats() if r["session"] == sid]) for s, sid in zip(mine, sessions, strict=True)
                ]
                assert min(reruns) > 3, reruns  # the page reran many times, always on its own replica

                # Force every websocket to reconnect: nginx's old worker closes them after 5 s.
                proxy.reload()
                for cookie in cookies:
                    wait_for(
                        lambda c=cookie: _ws_upstreams(proxy, c), 60, what=f"{cookie}'s websocket to close", sleep=pump
                    )
                # After the reconnect each page is still its session on its replica: a typed message
                # reaches the same conversation, and no replica saw a new browser session.
                for page, server, sid in zip(pages, mine, sessions, strict=True):
                    box = page.get_by_placeholder("…or type a message")
                    box.fill(TYPED)
                    box.press("Enter")
                    wait_for(
                        lambda s=server, i=sid: TYPED in s.by_session().get(i, {}).get("user_lines", []),
                        90,
                        what="the typed message in the same session after the reconnect",
                        sleep=pump,
                    )
                for server, sid in zip(mine, sessions, strict=True):
                    assert list(server.by_session()) == [sid], server.by_session()
                for cookie, server in zip(cookies, mine, strict=True):
                    assert _ws_upstreams(proxy, cookie) == {f"127.0.0.1:{server.port}"}, proxy.access_log()

                # A third browser: the round robin gives it a replica that is at its limit of 1 call.
                with chromium(pw, fake_mic) as ctx_c:
                    page_c = ctx_c.new_page()
                    page_c.goto(proxy.url, timeout=180_000)
                    full = replicas[int(_replica_cookie(ctx_c)[1:]) - 1]
                    wait_for(lambda: len(full.by_session()) == 2, 120, what="the third session", sleep=pump)
                    press(page_c, "Start conversation")
                    wait_for(
                        lambda: refusal in page_c.inner_text("body"), 90, what="the refusal in the page", sleep=pump
                    )
                rows = {sid: row for server in replicas for sid, row in server.by_session().items()}
                assert all(rows[sid]["webrtc_active"] and rows[sid]["engine_alive"] for sid in sessions), rows
            except BaseException:
                for name, page in zip("ab", pages, strict=True):
                    with contextlib.suppress(Exception):
                        page.screenshot(path=str(ARTIFACTS / f"replicas_{name}.png"), full_page=True)
                for i, server in enumerate(replicas, 1):
                    (ARTIFACTS / f"replicas_server{i}.log").write_text(server.log_text())
                shutil.copy(proxy.state / "access.log", ARTIFACTS / "replicas_nginx_access.log")
                raise
