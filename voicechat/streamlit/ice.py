"""The WebRTC ``rtc_configuration``: explicit ICE servers, Cloudflare or Twilio TURN, or streamlit-webrtc's default.

Order, first match wins:

1. ``VOICECHAT_ICE_SERVERS`` (``Settings.ice_servers``): a JSON list of RTCIceServer dicts.
   ``'[]'`` means host candidates only — right for localhost, offline use and the tests.
2. Cloudflare Realtime TURN (``CLOUDFLARE_TURN_KEY_ID`` + ``CLOUDFLARE_TURN_KEY_API_TOKEN``, from
   ``st.secrets`` or the environment): short-lived credentials from Cloudflare's REST API. It is
   first because it has a free tier and streamlit-webrtc recommends it (the same variable names).
3. Twilio (``TWILIO_ACCOUNT_SID`` + ``TWILIO_AUTH_TOKEN``): a short-lived Network Traversal token.
4. Nothing: ``None``, and streamlit-webrtc picks its own default (Google's public STUN server,
   or Hugging Face TURN if ``HF_TOKEN`` is set).

Both TURN providers are asked over plain HTTPS (no SDK), and their answers are cached per process
and credential pair for most of their lifetime: every new browser session needs ICE servers,
and the provider should not be asked for each. Half a credential pair, a refused key or an
unreachable provider is a :class:`ConfigError` that names the variables to fix.

The TURN credentials do go to the browser (it must use them); the long-lived key or token that
mints them, and the OpenAI key, never do.

Threads: called from Streamlit script threads of many sessions at once; the cache has a lock.
"""

from __future__ import annotations

import base64
import json
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Mapping
from typing import Any

from voicechat.errors import ConfigError

TWILIO_API = "https://api.twilio.com/2010-04-01"
TWILIO_TTL_S = 3600
CLOUDFLARE_API = "https://rtc.live.cloudflare.com/v1"
# Cloudflare allows up to 48 h. Reused for 80 % of it, so a browser always gets ≥ 1 h of validity.
CLOUDFLARE_TTL_S = 5 * 3600
REUSE_FRACTION = 0.8
REQUEST_TIMEOUT_S = 10.0
# Cloudflare's edge refuses urllib's default agent with a 403 (error 1010), which reads like a bad key.
USER_AGENT = "voicechat"

_cache: dict[tuple[str, str, str], tuple[float, list[dict[str, Any]]]] = {}
_cache_lock = threading.Lock()


def parse_ice_servers(raw: str) -> list[dict[str, Any]]:
    """``VOICECHAT_ICE_SERVERS`` as a list of dicts with ``urls``; raises ConfigError with the fix."""
    try:
        value = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise ConfigError(
            f"VOICECHAT_ICE_SERVERS is not valid JSON: {exc}",
            'set it to a JSON list, e.g. [{"urls": "stun:stun.l.google.com:19302"}] or []',
        ) from exc
    if isinstance(value, dict) and "iceServers" in value:
        value = value["iceServers"]
    if not isinstance(value, list) or not all(isinstance(s, dict) and "urls" in s for s in value):
        raise ConfigError(
            "VOICECHAT_ICE_SERVERS must be a JSON list of objects with a 'urls' key",
            'e.g. [{"urls": ["turn:turn.example.com:3478"], "username": "u", "credential": "p"}]',
        )
    return value


def _cached(
    provider: str, ident: str, secret: str, ttl_s: float, fetch: Callable[[], list[dict[str, Any]]]
) -> list[dict[str, Any]]:
    """``fetch()``'s servers, reused for ``REUSE_FRACTION`` of their ``ttl_s`` (per process)."""
    key = (provider, ident, secret)
    now = time.monotonic()
    with _cache_lock:
        hit = _cache.get(key)
        if hit is not None and hit[0] > now:
            return hit[1]
    servers = fetch()  # outside the lock: a slow provider must not block other sessions' cache hits
    with _cache_lock:
        _cache[key] = (now + ttl_s * REUSE_FRACTION, servers)
    return servers


def _post_json(
    url: str, data: bytes, headers: dict[str, str], *, provider: str, fix: str, secret: str, timeout: float
) -> Any:
    """POST and parse the JSON answer; any failure is a ConfigError naming ``fix`` (never ``secret``)."""
    req = urllib.request.Request(url, data=data, headers={"User-Agent": USER_AGENT, **headers}, method="POST")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return json.loads(resp.read())
    except (urllib.error.URLError, TimeoutError, OSError, json.JSONDecodeError) as exc:
        reason = str(exc).replace(secret, "***") if secret else str(exc)
        raise ConfigError(f"could not get TURN credentials from {provider}: {reason}", fix) from exc


def _only_ice_fields(server: Mapping[str, Any]) -> dict[str, Any]:
    out = {k: v for k, v in server.items() if k in ("urls", "username", "credential")}
    if "urls" not in out and "url" in server:  # Twilio's older field name
        out["urls"] = server["url"]
    return out


def twilio_ice_servers(
    sid: str, token: str, *, api: str = TWILIO_API, timeout: float = REQUEST_TIMEOUT_S
) -> list[dict[str, Any]]:
    """A Twilio Network Traversal token's ICE servers (cached for most of its TTL, per process)."""
    fix = "check TWILIO_ACCOUNT_SID / TWILIO_AUTH_TOKEN, or set VOICECHAT_ICE_SERVERS"

    def fetch() -> list[dict[str, Any]]:
        body = _post_json(
            f"{api}/Accounts/{urllib.parse.quote(sid, safe='')}/Tokens.json",
            f"Ttl={TWILIO_TTL_S}".encode(),
            {"Authorization": "Basic " + base64.b64encode(f"{sid}:{token}".encode()).decode()},
            provider="Twilio",
            fix=fix,
            secret=token,
            timeout=timeout,
        )
        servers = body.get("ice_servers") if isinstance(body, dict) else None
        if not isinstance(servers, list) or not servers:
            raise ConfigError("could not get TURN credentials from Twilio: the answer has no ice_servers", fix)
        return [_only_ice_fields(s) for s in servers if isinstance(s, dict)]

    return _cached("twilio", f"{api} {sid}", token, TWILIO_TTL_S, fetch)


def _browser_usable(url: str) -> bool:
    # Browsers refuse port 53; Cloudflare lists :53 alternates that would only time out there.
    host_port = url.split("?", 1)[0]
    return not host_port.endswith(":53")


def cloudflare_ice_servers(
    key_id: str, api_token: str, *, api: str = CLOUDFLARE_API, timeout: float = REQUEST_TIMEOUT_S
) -> list[dict[str, Any]]:
    """ICE servers with short-lived credentials from Cloudflare Realtime TURN (cached like Twilio's)."""
    fix = "check CLOUDFLARE_TURN_KEY_ID / CLOUDFLARE_TURN_KEY_API_TOKEN, or set VOICECHAT_ICE_SERVERS"

    def fetch() -> list[dict[str, Any]]:
        body = _post_json(
            f"{api}/turn/keys/{urllib.parse.quote(key_id, safe='')}/credentials/generate-ice-servers",
            json.dumps({"ttl": CLOUDFLARE_TTL_S}).encode(),
            {"Authorization": f"Bearer {api_token}", "Content-Type": "application/json"},
            provider="Cloudflare",
            fix=fix,
            secret=api_token,
            timeout=timeout,
        )
        servers = body.get("iceServers") if isinstance(body, dict) else None
        if not isinstance(servers, list) or not servers:
            raise ConfigError("could not get TURN credentials from Cloudflare: the answer has no iceServers", fix)
        out = []
        for server in servers:
            if not isinstance(server, dict) or "urls" not in server:
                continue
            urls = server["urls"] if isinstance(server["urls"], list) else [server["urls"]]
            kept = [u for u in urls if isinstance(u, str) and _browser_usable(u)]
            if kept:
                out.append({**_only_ice_fields(server), "urls": kept})
        return out

    return _cached("cloudflare", f"{api} {key_id}", api_token, CLOUDFLARE_TTL_S, fetch)


def _pair(first: str, second: str, secrets: Mapping[str, Any], environ: Mapping[str, str]) -> tuple[str, str] | None:
    """Both values of a credential pair (a secret beats the environment); half a pair is an error."""
    a = str(secrets.get(first) or environ.get(first) or "")
    b = str(secrets.get(second) or environ.get(second) or "")
    if a and b:
        return a, b
    if a or b:
        have, missing = (first, second) if a else (second, first)
        raise ConfigError(
            f"{have} is set but {missing} is not, so that TURN provider cannot be used",
            f"set {missing} too (secrets or environment), or remove {have}",
        )
    return None


def rtc_configuration(
    ice_servers: str | None,
    secrets: Mapping[str, Any],
    environ: Mapping[str, str],
    *,
    cloudflare_api: str = CLOUDFLARE_API,
    twilio_api: str = TWILIO_API,
) -> dict[str, Any] | None:
    """The configuration for ``webrtc_streamer(rtc_configuration=...)``; ``None`` = library default."""
    if ice_servers is not None and ice_servers.strip():
        return {"iceServers": parse_ice_servers(ice_servers)}
    cloudflare = _pair("CLOUDFLARE_TURN_KEY_ID", "CLOUDFLARE_TURN_KEY_API_TOKEN", secrets, environ)
    if cloudflare:
        return {"iceServers": cloudflare_ice_servers(*cloudflare, api=cloudflare_api)}
    twilio = _pair("TWILIO_ACCOUNT_SID", "TWILIO_AUTH_TOKEN", secrets, environ)
    if twilio:
        return {"iceServers": twilio_ice_servers(*twilio, api=twilio_api)}
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
