"""TURN credentials from Cloudflare Realtime TURN and Twilio, against a real HTTP server on 127.0.0.1.

The server answers in each provider's documented format (Cloudflare: ``201`` with
``{"iceServers": [...]}``; Twilio: ``201`` with ``ice_servers``), so the request we build, the
answer we parse, the cache and the failure messages are all exercised over real HTTP.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from voicechat.errors import ConfigError
from voicechat.streamlit import ice

KEY_ID = "a1b2c3d4-turn-key-id"
TOKEN = "cf-SECRET-api-token-0123456789"
# Cloudflare's documented answer, :53 alternates included.
CLOUDFLARE_ANSWER = {
    "iceServers": [
        {"urls": ["stun:stun.cloudflare.com:3478", "stun:stun.cloudflare.com:53"]},
        {
            "urls": [
                "turn:turn.cloudflare.com:3478?transport=udp",
                "turn:turn.cloudflare.com:53?transport=udp",
                "turn:turn.cloudflare.com:3478?transport=tcp",
                "turns:turn.cloudflare.com:5349?transport=tcp",
                "turns:turn.cloudflare.com:443?transport=tcp",
            ],
            "username": "g0-short-lived-user",
            "credential": "short-lived-pass",
        },
    ]
}


class Provider:
    """A loopback TURN-credential API: records each request, answers with ``status`` and ``body``."""

    def __init__(self) -> None:
        self.status = 201
        self.body: bytes = json.dumps(CLOUDFLARE_ANSWER).encode()
        self.requests: list[dict[str, Any]] = []
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                data = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                owner.requests.append({"path": self.path, "headers": dict(self.headers), "body": data})
                self.send_response(owner.status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(owner.body)))
                self.end_headers()
                self.wfile.write(owner.body)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def provider() -> Iterator[Provider]:
    ice._cache.clear()
    server = Provider()
    try:
        yield server
    finally:
        server.close()
        ice._cache.clear()


def cloudflare(
    provider: Provider, secrets: dict[str, str] | None = None, environ: dict[str, str] | None = None
) -> dict[str, Any] | None:
    env = {"CLOUDFLARE_TURN_KEY_ID": KEY_ID, "CLOUDFLARE_TURN_KEY_API_TOKEN": TOKEN} if environ is None else environ
    return ice.rtc_configuration(None, secrets or {}, env, cloudflare_api=provider.url)


def test_cloudflare_request_and_answer(provider: Provider) -> None:
    config = cloudflare(provider)

    (request,) = provider.requests
    assert request["path"] == f"/v1/turn/keys/{KEY_ID}/credentials/generate-ice-servers"
    assert request["headers"]["Authorization"] == f"Bearer {TOKEN}"
    assert request["headers"]["Content-Type"] == "application/json"
    assert not request["headers"]["User-Agent"].startswith("Python-urllib")  # Cloudflare's edge 403s that agent
    assert 3600 < json.loads(request["body"])["ttl"] <= 48 * 3600
    # What the browser gets: Cloudflare's servers minus the :53 ports browsers refuse, no API token.
    assert config == {
        "iceServers": [
            {"urls": ["stun:stun.cloudflare.com:3478"]},
            {
                "urls": [
                    "turn:turn.cloudflare.com:3478?transport=udp",
                    "turn:turn.cloudflare.com:3478?transport=tcp",
                    "turns:turn.cloudflare.com:5349?transport=tcp",
                    "turns:turn.cloudflare.com:443?transport=tcp",
                ],
                "username": "g0-short-lived-user",
                "credential": "short-lived-pass",
            },
        ]
    }
    assert TOKEN not in json.dumps(config)
    assert ice.describe(config) == "ICE: 5 server URL(s) (stun, turn, turns)"


def test_cloudflare_credentials_are_cached_per_key(provider: Provider) -> None:
    first = cloudflare(provider)
    assert cloudflare(provider) == first and len(provider.requests) == 1  # the next session reuses them
    cloudflare(provider, environ={"CLOUDFLARE_TURN_KEY_ID": "other-key", "CLOUDFLARE_TURN_KEY_API_TOKEN": TOKEN})
    assert len(provider.requests) == 2  # another key is another cache entry
    for entry in list(ice._cache):  # as if most of the TTL had passed
        ice._cache[entry] = (0.0, ice._cache[entry][1])
    cloudflare(provider)
    assert len(provider.requests) == 3


def test_cloudflare_comes_first_and_secrets_beat_environment(provider: Provider) -> None:
    env = {
        "TWILIO_ACCOUNT_SID": "AC123",
        "TWILIO_AUTH_TOKEN": "tw",
        "CLOUDFLARE_TURN_KEY_ID": "from-env",
        "CLOUDFLARE_TURN_KEY_API_TOKEN": "env-token",
    }
    cloudflare(provider, secrets={"CLOUDFLARE_TURN_KEY_ID": KEY_ID}, environ=env)
    (request,) = provider.requests
    assert f"/keys/{KEY_ID}/" in request["path"] and request["headers"]["Authorization"] == "Bearer env-token"
    # VOICECHAT_ICE_SERVERS still wins over every provider.
    assert ice.rtc_configuration("[]", {}, env, cloudflare_api=provider.url) == {"iceServers": []}
    assert len(provider.requests) == 1


@pytest.mark.parametrize(
    ("status", "body", "expect"),
    [
        (401, b'{"success": false, "errors": [{"message": "Unauthorized"}]}', "HTTP Error 401"),
        (201, b"<html>gateway</html>", "Expecting value"),
        (201, b'{"servers": []}', "no iceServers"),
    ],
)
def test_cloudflare_failures_name_the_variables(provider: Provider, status: int, body: bytes, expect: str) -> None:
    provider.status, provider.body = status, body
    with pytest.raises(ConfigError) as info:
        cloudflare(provider)
    err = info.value
    assert "could not get TURN credentials from Cloudflare" in str(err) and expect in str(err)
    assert "CLOUDFLARE_TURN_KEY_ID" in err.hint and "CLOUDFLARE_TURN_KEY_API_TOKEN" in err.hint
    assert TOKEN not in str(err) + err.hint
    assert not ice._cache  # a failure is not cached: the next session asks again


def test_unreachable_cloudflare_is_a_clear_error(provider: Provider) -> None:
    url = provider.url
    provider.close()
    with pytest.raises(ConfigError, match="could not get TURN credentials from Cloudflare"):
        ice.rtc_configuration(
            None, {}, {"CLOUDFLARE_TURN_KEY_ID": KEY_ID, "CLOUDFLARE_TURN_KEY_API_TOKEN": TOKEN}, cloudflare_api=url
        )


@pytest.mark.parametrize("half", [{"CLOUDFLARE_TURN_KEY_ID": KEY_ID}, {"TWILIO_AUTH_TOKEN": "x"}])
def test_half_a_credential_pair_says_which_half_is_missing(half: dict[str, str]) -> None:
    with pytest.raises(ConfigError) as info:
        ice.rtc_configuration(None, {}, half)
    missing = {"CLOUDFLARE_TURN_KEY_ID": "CLOUDFLARE_TURN_KEY_API_TOKEN", "TWILIO_AUTH_TOKEN": "TWILIO_ACCOUNT_SID"}
    assert missing[next(iter(half))] in str(info.value)


def test_twilio_token_request_and_cache(provider: Provider) -> None:
    provider.body = json.dumps(
        {
            "ice_servers": [
                {"url": "stun:global.stun.twilio.com:3478", "urls": "stun:global.stun.twilio.com:3478"},
                {"url": "turn:global.turn.twilio.com:3478?transport=udp", "username": "u1", "credential": "c1"},
            ],
            "ttl": "3600",
            "password": "c1",
        }
    ).encode()
    env = {"TWILIO_ACCOUNT_SID": "AC123", "TWILIO_AUTH_TOKEN": "tw-SECRET"}
    config = ice.rtc_configuration(None, {}, env, twilio_api=provider.url)
    assert config == {
        "iceServers": [
            {"urls": "stun:global.stun.twilio.com:3478"},
            {"urls": "turn:global.turn.twilio.com:3478?transport=udp", "username": "u1", "credential": "c1"},
        ]
    }
    ice.rtc_configuration(None, {}, env, twilio_api=provider.url)
    (request,) = provider.requests
    assert request["path"] == "/v1/Accounts/AC123/Tokens.json" and request["body"] == b"Ttl=3600"
    assert request["headers"]["Authorization"].startswith("Basic ")
    provider.status, provider.body = 401, b'{"code": 20003, "message": "Authenticate"}'
    ice._cache.clear()
    with pytest.raises(ConfigError) as info:
        ice.rtc_configuration(None, {}, env, twilio_api=provider.url)
    assert "Twilio" in str(info.value) and "TWILIO_AUTH_TOKEN" in info.value.hint
    assert "tw-SECRET" not in str(info.value)


def test_app_reads_turn_credentials_from_dotenv_too(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Like every other setting, a TURN pair may live in .env (.env.example lists them there)."""
    from voicechat.config import Settings
    from voicechat.streamlit.embed import rtc_config

    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("CLOUDFLARE_TURN_KEY_API_TOKEN", raising=False)
    (tmp_path / ".env").write_text(f"CLOUDFLARE_TURN_KEY_ID={KEY_ID}\n")
    config, error = rtc_config(Settings(), {})
    assert config is None and error is not None and "CLOUDFLARE_TURN_KEY_API_TOKEN is not" in error
