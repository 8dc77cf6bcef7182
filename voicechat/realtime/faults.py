"""Realtime failures in voicechat's words: a refused WebSocket handshake, an ``error`` event, a drop.

The messages follow :func:`voicechat.openai_client.translate_error` (same wording, same hints, the
key never shown), so a realtime session fails the way the HTTP backends do.
"""

from __future__ import annotations

import json
from typing import Any

from voicechat.config import Settings
from voicechat.errors import (
    AuthenticationFailed,
    BackendUnavailable,
    ProviderError,
    ProviderUnavailable,
    RateLimited,
    VoicechatError,
)
from voicechat.openai_client import base_url_of, redact, setting_names


def _status_and_detail(exc: BaseException) -> tuple[int | None, str]:
    """The HTTP status of a refused handshake (websockets' InvalidStatus / older InvalidStatusCode)."""
    response = getattr(exc, "response", None)
    status = getattr(response, "status_code", None) or getattr(exc, "status_code", None)
    body = getattr(response, "body", b"") or b""
    detail = ""
    try:
        parsed = json.loads(body) if body else None
        if isinstance(parsed, dict) and isinstance(parsed.get("error"), dict):
            detail = str(parsed["error"].get("message", ""))
    except ValueError:
        detail = body.decode(errors="replace")[:200] if isinstance(body, bytes) else ""
    return (int(status) if status else None), detail


def connect_failure(exc: BaseException, settings: Settings) -> VoicechatError:
    """Why opening the realtime connection failed, and what to do about it."""
    if isinstance(exc, VoicechatError):
        return exc
    where = f"{base_url_of(settings)}/realtime"
    key_var, url_var = setting_names(settings)
    status, detail = _status_and_detail(exc)
    tail = f": {detail}" if detail else ""
    err: VoicechatError
    if "openai[realtime]" in str(exc) or isinstance(exc, ImportError):
        err = BackendUnavailable(
            "the realtime backend needs the 'websockets' package", 'pip install "voicechat[openai]"'
        )
    elif status in (401, 403):
        hint = f"check {key_var}" if settings.openai_api_key else f"this server needs a key: set {key_var}"
        err = AuthenticationFailed(f"{where} rejected the API key (HTTP {status}){tail}", hint)
    elif status == 429:
        err = RateLimited(f"{where} is rate-limiting connections (HTTP 429){tail}", "wait a moment and try again")
    elif status == 404:
        err = ProviderError(
            f"{where} has no realtime endpoint or model (HTTP 404){tail}",
            f"check VOICECHAT_REALTIME_MODEL and {url_var}",
        )
    elif status is not None and status >= 500:
        err = ProviderUnavailable(
            f"{where} failed with HTTP {status}{tail}", "the provider is having trouble; try again"
        )
    elif status is not None:
        err = ProviderError(f"{where} refused the connection (HTTP {status}){tail}", f"check {url_var}")
    else:
        err = ProviderUnavailable(
            f"could not reach {where}: {type(exc).__name__}: {exc}", f"check the network and {url_var}"
        )
    return _redacted(err, settings)


def error_event(error: dict[str, Any], settings: Settings) -> VoicechatError:
    """An ``error`` event (or a failed ``response.done``) from the server."""
    where = base_url_of(settings)
    code = str(error.get("code") or "")
    kind = str(error.get("type") or "")
    message = str(error.get("message") or code or kind or "unknown error")
    err: VoicechatError
    if "rate_limit" in code or "rate_limit" in kind:
        err = RateLimited(f"{where} is rate-limiting the realtime model: {message}", "wait a moment and try again")
    elif code == "insufficient_quota":
        err = RateLimited(f"{where}: {message}", "the account is out of quota: add credit or use another key")
        err.retryable = False
    elif kind == "server_error" or code in ("server_error", "internal_error"):
        err = ProviderUnavailable(f"{where} failed on the realtime model: {message}", "try again shortly")
    elif code == "session_expired":
        err = ProviderUnavailable(f"{where} ended the realtime session: {message}", "the next turn opens a new one")
    else:
        err = ProviderError(f"{where} reported a realtime error: {message}", "check the realtime settings")
    return _redacted(err, settings)


def dropped(settings: Settings, reason: str = "") -> VoicechatError:
    """The socket closed under a reply: what was heard is kept; the next turn reconnects."""
    why = f" ({reason})" if reason else ""
    return _redacted(
        ProviderUnavailable(
            f"the connection to {base_url_of(settings)}/realtime dropped mid-reply{why}",
            "the part already heard is kept; the next turn reconnects",
        ),
        settings,
    )


def _redacted(err: VoicechatError, settings: Settings) -> VoicechatError:
    err.message = redact(err.message, settings)
    err.hint = redact(err.hint, settings)
    err.args = (err.message,)
    return err
