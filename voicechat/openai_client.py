"""One configured ``openai.AsyncOpenAI`` per event loop, and openai errors in voicechat's words.

Retries are the SDK's job: ``max_retries`` makes it retry 429, 408/409, 5xx and connection
errors with exponential backoff and jitter, honouring ``Retry-After``. We only configure it,
so there is exactly one retry policy to reason about.

``openai`` is imported lazily: ``import voicechat`` must work offline without it, and a
missing package becomes :class:`BackendUnavailable` with the install command.
"""

from __future__ import annotations

import asyncio
import functools
import ssl
import sys
from types import ModuleType
from typing import TYPE_CHECKING, Any

from voicechat.config import OPENAI_DEFAULT_BASE_URL, Settings, display_url
from voicechat.errors import (
    AuthenticationFailed,
    BackendUnavailable,
    ConfigError,
    ProviderError,
    ProviderUnavailable,
    RateLimited,
    VoicechatError,
)

if TYPE_CHECKING:
    from openai import AsyncOpenAI

DEFAULT_BASE_URL = OPENAI_DEFAULT_BASE_URL
# Local OpenAI-compatible servers (Ollama, llama.cpp, vLLM) ignore auth, but the SDK refuses
# to build a client without some key.
PLACEHOLDER_API_KEY = "voicechat-no-key"
INSTALL_HINT = 'pip install "voicechat[openai]"'


def require_openai() -> ModuleType:
    """Import ``openai`` now, so a missing extra is reported when the backend is chosen."""
    try:
        import openai
    except ImportError as exc:
        raise BackendUnavailable(
            "the OpenAI backend needs the 'openai' package, which is not installed", INSTALL_HINT
        ) from exc
    return openai


def base_url_of(settings: Settings) -> str:
    """The server requests go to, with any ``user:password@`` and query removed so it is safe to show."""
    return display_url(settings.openai_base_url or DEFAULT_BASE_URL)


def setting_names(settings: Settings | None) -> tuple[str, str]:
    """The variables that set this server's key and URL, for hints (a stage view names its own)."""
    if settings is not None and settings.stage:
        upper = settings.stage.upper()
        ep = settings.endpoint(settings.stage)
        return (
            ep.key_var or f"VOICECHAT_{upper}_API_KEY or OPENAI_API_KEY",
            ep.url_var or f"VOICECHAT_{upper}_BASE_URL or OPENAI_BASE_URL",
        )
    return "OPENAI_API_KEY", "OPENAI_BASE_URL"


def api_key_of(settings: Settings) -> str:
    """The key to send; a placeholder for keyless custom servers; ConfigError when neither is set.

    Always passing the key explicitly stops the SDK from silently reading ``OPENAI_API_KEY``
    from the process environment behind :class:`Settings`' back.
    """
    if settings.openai_api_key:
        return settings.openai_api_key
    if settings.openai_base_url:
        return PLACEHOLDER_API_KEY
    key_var, url_var = setting_names(settings)
    raise ConfigError(
        "the OpenAI backend needs an API key, and none is set",
        f"set {key_var} (or {url_var} for a local OpenAI-compatible server such as Ollama)",
    )


@functools.cache
def _tls_context() -> ssl.SSLContext:
    """One TLS context (CA bundle loaded once) for every client in the process.

    Each client would otherwise load the CA bundle itself: about 0.9 MB and 50 ms of CPU per
    client, three clients per session. An ``SSLContext`` may be shared across threads.
    """
    import httpx

    make = getattr(httpx, "create_ssl_context", None)
    return make() if make is not None else ssl.create_default_context()


def make_client(settings: Settings) -> AsyncOpenAI:
    """Build the SDK client with our timeout and retry budget (the SDK does the retrying)."""
    openai = require_openai()
    client: AsyncOpenAI = openai.AsyncOpenAI(
        api_key=api_key_of(settings),
        base_url=settings.openai_base_url or DEFAULT_BASE_URL,
        timeout=settings.request_timeout_s,
        max_retries=settings.max_retries,
        http_client=openai.DefaultAsyncHttpxClient(verify=_tls_context()),
    )
    return client


class LoopLocalClient:
    """Hands out one ``AsyncOpenAI`` per running event loop.

    The SDK's connection pool is bound to the loop that opened it; surfaces such as
    Streamlit and notebooks may call a backend from more than one loop over its life, and a
    pooled connection reused on another loop fails. Construction checks the package and
    credentials up front so a misconfiguration is reported when the backend is chosen.
    """

    def __init__(self, settings: Settings) -> None:
        require_openai()
        api_key_of(settings)
        self.settings = settings
        self._client: AsyncOpenAI | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def get(self) -> AsyncOpenAI:
        loop = asyncio.get_running_loop()
        if self._client is None or self._loop is not loop:
            # A client from a previous (now finished) loop cannot be closed from this one;
            # dropping it lets its sockets be collected.
            self._client = make_client(self.settings)
            self._loop = loop
        return self._client

    async def aclose(self) -> None:
        """Close pooled connections; the next :meth:`get` builds a fresh client."""
        client, loop = self._client, self._loop
        self._client = self._loop = None
        if client is not None and loop is asyncio.get_running_loop():
            await client.close()


def redact(text: str, settings: Settings | None) -> str:
    """Remove the API key from text that may echo it (some servers quote the key they got)."""
    for key in settings.api_keys() if settings else ():
        if len(key) >= 4:
            text = text.replace(key, "***")
    return text


def _transport_errors() -> tuple[type[BaseException], ...]:
    """Network errors raised by whichever httpx the installed SDK uses (httpx2 or httpx)."""
    found: list[type[BaseException]] = [ConnectionError]
    for name in ("httpx2", "httpx"):
        module = sys.modules.get(name)
        if module is not None and hasattr(module, "TransportError"):
            found.append(module.TransportError)
    return tuple(found)


def _server_message(exc: Any) -> str:
    """The human part of an OpenAI-style error body, falling back to the SDK's summary."""
    body = getattr(exc, "body", None)
    if isinstance(body, dict):
        message = body.get("message")
        if isinstance(message, str) and message:
            return message
    return str(getattr(exc, "message", "") or exc)


def translate_error(exc: BaseException, settings: Settings | None = None) -> VoicechatError:
    """Map an openai/httpx exception to a :class:`VoicechatError` whose hint says what to do.

    By the time this runs the SDK has already spent its retries, so the result says
    "after N retries" where that matters. The API key never appears in the result.
    """
    if isinstance(exc, VoicechatError):
        return exc
    err = _translate(exc, settings)
    err.message = redact(err.message, settings)
    err.hint = redact(err.hint, settings)
    err.args = (err.message,)
    return err


def _translate(exc: BaseException, settings: Settings | None) -> VoicechatError:
    where = base_url_of(settings) if settings else "the OpenAI server"
    retries = f" after {settings.max_retries} retries" if settings and settings.max_retries else ""
    custom = bool(settings and settings.openai_base_url)
    key_var, url_var = setting_names(settings)
    openai = sys.modules.get("openai")
    if openai is None:
        return _translate_generic(exc, where)

    if isinstance(exc, openai.AuthenticationError):
        hint = f"check {key_var}"
        if settings is not None and not settings.openai_api_key:
            hint = f"this server needs a key: set {key_var}"
        if custom:
            hint += f" and {url_var} (now {where})"
        return AuthenticationFailed(f"{where} rejected the API key (HTTP 401): {_server_message(exc)}", hint)
    if isinstance(exc, openai.RateLimitError):
        message = f"{where} is rate-limiting requests (HTTP 429){retries}: {_server_message(exc)}"
        if getattr(exc, "code", None) == "insufficient_quota":
            err = RateLimited(message, "the account is out of quota: add credit or use another key")
            err.retryable = False
            return err
        return RateLimited(message, "wait a moment and try again, or raise VOICECHAT_MAX_RETRIES")
    if isinstance(exc, openai.APITimeoutError):
        timeout = f"{settings.request_timeout_s:g} s" if settings else "the timeout"
        return ProviderUnavailable(
            f"{where} did not answer within {timeout}{retries}",
            "check the server is up, or raise VOICECHAT_REQUEST_TIMEOUT_S",
        )
    if isinstance(exc, openai.APIConnectionError):
        return ProviderUnavailable(
            f"could not reach {where}{retries}: {_server_message(exc)}",
            f"check the network and {url_var}" if custom else "check the network connection",
        )
    if isinstance(exc, openai.APIStatusError):
        status = exc.status_code
        detail = _server_message(exc)
        if status >= 500:
            return ProviderUnavailable(
                f"{where} failed with HTTP {status}{retries}: {detail}",
                "the provider is having trouble; try again shortly",
            )
        hints = {
            403: f"the key has no access to this model or region: check {key_var}",
            404: f"check the model names (VOICECHAT_OPENAI_*_MODEL) and {url_var}",
        }
        return ProviderError(
            f"{where} refused the request (HTTP {status}): {detail}",
            hints.get(status, "check the OpenAI settings (VOICECHAT_OPENAI_*)"),
        )
    if isinstance(exc, openai.APIError):
        return ProviderError(f"{where} reported an error: {_server_message(exc)}")
    if isinstance(exc, openai.OpenAIError):
        return ProviderError(f"OpenAI client error: {exc}")
    return _translate_generic(exc, where)


def _translate_generic(exc: BaseException, where: str) -> VoicechatError:
    if isinstance(exc, _transport_errors()):
        return ProviderUnavailable(f"the connection to {where} failed: {type(exc).__name__}: {exc}", "try again")
    if isinstance(exc, ValueError):  # json.JSONDecodeError and friends: a garbled reply
        return ProviderError(
            f"{where} sent a malformed response: {exc}",
            "check OPENAI_BASE_URL points at an OpenAI-compatible API",
        )
    return ProviderError(f"unexpected error talking to {where}: {type(exc).__name__}: {exc}")


class OpenAIBackend:
    """What the three OpenAI backends share: their settings, one client per loop, closing it, and
    refusing to call again once the server has rejected the key.

    A 401 cannot heal by itself, and a voice session asks often (a speculative transcription at
    every pause, a live caption every 800 ms): without the latch one spoken question sent the bad
    key five times. After a 401 every call raises the same :class:`AuthenticationFailed` without a
    request; the surfaces build new backends when the settings change, which clears it.
    """

    name = "openai"
    stage = ""  # "stt" | "llm" | "tts" (or "line_end"), set by each backend: which endpoint it calls

    def __init__(self, settings: Settings) -> None:
        self.settings = settings.for_stage(self.stage)
        self._client = LoopLocalClient(self.settings)
        self._rejected: AuthenticationFailed | None = None

    def client(self) -> AsyncOpenAI:
        """The SDK client for this loop; after a 401, the same error again, with no request."""
        if self._rejected is not None:
            raise AuthenticationFailed(self._rejected.message, self._rejected.hint)
        return self._client.get()

    def failure(self, exc: BaseException) -> VoicechatError:
        """``exc`` in voicechat's words (see :func:`translate_error`); remembers a rejected key."""
        err = translate_error(exc, self.settings)
        if isinstance(err, AuthenticationFailed):
            self._rejected = err
        return err

    async def aclose(self) -> None:
        """Release pooled HTTP connections (call at session end, on the loop that used them)."""
        await self._client.aclose()
