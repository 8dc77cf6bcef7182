"""One root error; each subclass says whether retrying can help and what the user should do.

Surfaces show ``str(err)`` as one line: the message followed by its remedy, so no
traceback is ever the only thing a user sees.
"""

from __future__ import annotations


class VoicechatError(Exception):
    """Root of every error voicechat raises on purpose.

    ``hint`` is the remedy (which setting, package or file fixes it); ``retryable``
    tells the engine whether the same request might succeed later.
    """

    retryable: bool = False

    def __init__(self, message: str, hint: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return f"{self.message} — {self.hint}" if self.hint else self.message


class ConfigError(VoicechatError):
    """A setting is missing or invalid; nothing will work until it is changed."""


class BackendUnavailable(VoicechatError):
    """A backend's package or model is not installed or cannot be loaded."""


class ModelFileError(BackendUnavailable):
    """A model file is missing or corrupt; the message names the file."""


class AudioFormatError(VoicechatError):
    """Input audio could not be decoded or converted."""


class AudioTooLarge(VoicechatError):
    """Input audio exceeds the configured size limit and was refused."""


class ProviderError(VoicechatError):
    """A remote provider (OpenAI or compatible) failed after any retries."""


class AuthenticationFailed(ProviderError):
    """The provider refused the API key; retrying cannot help."""


class RateLimited(ProviderError):
    """The provider said 429 even after bounded retries."""

    retryable = True


class ProviderUnavailable(ProviderError):
    """Connection failure, timeout or 5xx even after bounded retries."""

    retryable = True


class StreamInterrupted(ProviderError):
    """A streamed reply stopped before it was complete; what arrived is kept."""

    retryable = True

    def __init__(self, message: str, hint: str = "", partial: str = "") -> None:
        super().__init__(message, hint)
        self.partial = partial
