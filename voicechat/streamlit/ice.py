"""The WebRTC ``rtc_configuration``: explicit ICE servers, Twilio TURN, or streamlit-webrtc's default.

Order, first match wins:

1. ``VOICECHAT_ICE_SERVERS`` (``Settings.ice_servers``): a JSON list of RTCIceServer dicts.
   ``'[]'`` means host candidates only — right for localhost, offline use and the tests.
2. Twilio credentials (``TWILIO_ACCOUNT_SID`` + ``TWILIO_AUTH_TOKEN``, from ``st.secrets`` or the
   environment): a short-lived TURN token from Twilio's REST API, cached until near expiry.
3. Nothing: ``None``, and streamlit-webrtc picks its own default (Google's public STUN server,
   or Cloudflare / Twilio / Hugging Face TURN if their environment variables are set).

The TURN credentials do go to the browser (it must use them); the OpenAI key never does.
"""

from __future__ import annotations

import base64
import json
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from typing import Any

from voicechat.errors import ConfigError

TWILIO_TTL_S = 3600
_twilio_cache: dict[tuple[str, str], tuple[float, list[dict[str, Any]]]] = {}
_twilio_lock = threading.Lock()


def parse_ice_servers(raw: str) -> list[dict[str, Any]]:
    """``VOICECHAT_ICE_SERVERS`` as a list of dicts with ``urls``; raises ConfigError with the fix."""
    try:
        value = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"VOICECHAT_ICE_SERVERS is not valid JSON: {exc}",
                          'set it to a JSON list, e.g. [{"urls": "stun:stun.l.google.com:19302"}] or []') from exc
    if isinstance(value, dict) and "iceServers" in value:
        value = value["iceServers"]
    if not isinstance(value, list) or not all(isinstance(s, dict) and "urls" in s for s in value):
        raise ConfigError("VOICECHAT_ICE_SERVERS must be a JSON list of objects with a 'urls' key",
                          'e.g. [{"urls": ["turn:turn.example.com:3478"], "username": "u", "credential": "p"}]')
    return value


def twilio_ice_servers(sid: str, token: str, *, timeout: float = 10.0) -> list[dict[str, Any]]:
    """A Twilio Network Traversal token's ICE servers (cached for most of its TTL, per process)."""
    now = time.monotonic()
    with _twilio_lock:
        hit = _twilio_cache.get((sid, token))
        if hit is not None and hit[0] > now:
            return hit[1]
    req = urllib.request.Request(
        f"https://api.twilio.com/2010-04-01/Accounts/{sid}/Tokens.json",
        data=f"Ttl={TWILIO_TTL_S}".encode(),
        headers={"Authorization": "Basic " + base64.b64encode(f"{sid}:{token}".encode()).decode()},
        method="POST",
    )
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            body = json.loads(resp.read())
    except (urllib.error.URLError, TimeoutError, json.JSONDecodeError) as exc:
        raise ConfigError(f"could not get TURN credentials from Twilio: {exc}",
                          "check TWILIO_ACCOUNT_SID / TWILIO_AUTH_TOKEN, or set VOICECHAT_ICE_SERVERS") from exc
    servers = [{k: v for k, v in s.items() if k in ("urls", "username", "credential")}
               | ({"urls": s["url"]} if "urls" not in s and "url" in s else {})
               for s in body.get("ice_servers", [])]
    with _twilio_lock:
        _twilio_cache[(sid, token)] = (now + TWILIO_TTL_S * 0.8, servers)
    return servers


def rtc_configuration(ice_servers: str | None, secrets: Mapping[str, Any], environ: Mapping[str, str]
                      ) -> dict[str, Any] | None:
    """The configuration for ``webrtc_streamer(rtc_configuration=...)``; ``None`` = library default."""
    if ice_servers is not None and ice_servers.strip():
        return {"iceServers": parse_ice_servers(ice_servers)}
    sid = str(secrets.get("TWILIO_ACCOUNT_SID") or environ.get("TWILIO_ACCOUNT_SID") or "")
    token = str(secrets.get("TWILIO_AUTH_TOKEN") or environ.get("TWILIO_AUTH_TOKEN") or "")
    if sid and token:
        return {"iceServers": twilio_ice_servers(sid, token)}
    return None


def describe(config: dict[str, Any] | None) -> str:
    """One line for the sidebar, without credentials."""
    if config is None:
        return "ICE: streamlit-webrtc default (public STUN; no TURN unless configured)"
    servers = config.get("iceServers") or []
    if not servers:
        return "ICE: host candidates only (VOICECHAT_ICE_SERVERS='[]': localhost / LAN)"
    urls: list[str] = []
    for s in servers:
        u = s.get("urls")
        urls.extend(u if isinstance(u, list) else [str(u)])
    kinds = sorted({u.split(":", 1)[0] for u in urls})
    return f"ICE: {len(urls)} server URL(s) ({', '.join(kinds)})"
