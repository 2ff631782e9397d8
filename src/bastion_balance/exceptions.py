"""Every exception bastion_balance raises.

Catching :class:`BastionBalanceError` catches them all::

    BastionBalanceError
    ├── ConfigurationError        bad or missing credentials, duplicate label, insecure URL, unknown venue
    ├── MissingRateError          a balance's currency has no rate (the aggregate reports it in errors)
    ├── TransportError            connection, TLS, read errors (after retries)
    │   └── DeadlineExceededError the fetch's deadline passed
    ├── ExchangeAPIError          the venue refused: .venue, .code, .status_code
    │   ├── AuthenticationError   bad key, signature, permission, expired token
    │   ├── RateLimitedError      .retry_after (venue's 429/code, or our limiter past the deadline)
    │   └── ServiceUnavailableError  busy, maintenance, 5xx after retries
    └── UnexpectedResponseError   not JSON, HTML, wrong shape, bad number (.venue, .field, .value)
        └── ResponseTooLargeError  body over the cap (default 4 MiB)

Exceptions carry context as attributes (never a secret), pickle, and are chained with
``raise ... from exc`` where they translate a lower-level error.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "AuthenticationError",
    "BastionBalanceError",
    "ConfigurationError",
    "DeadlineExceededError",
    "ExchangeAPIError",
    "MissingRateError",
    "RateLimitedError",
    "ResponseTooLargeError",
    "ServiceUnavailableError",
    "TransportError",
    "UnexpectedResponseError",
]

_MAX_VALUE_CHARS = 120


def _rebuild(
    cls: type[BastionBalanceError], args: tuple[object, ...], state: dict[str, object]
) -> BastionBalanceError:
    exc = cls.__new__(cls, *args)
    Exception.__init__(exc, *args)
    exc.__dict__.update(state)
    return exc


class BastionBalanceError(Exception):
    """Base class of every error raised by bastion_balance.

    ``transient`` tells the retry layer whether trying again may help.
    """

    transient: bool = False

    def __init__(self, message: str, *, venue: str | None = None) -> None:
        super().__init__(message)
        self.venue = venue

    @property
    def message(self) -> str:
        """The human-readable message."""
        return str(self.args[0]) if self.args else ""

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild, (type(self), self.args, dict(self.__dict__)))


class ConfigurationError(BastionBalanceError):
    """Bad or missing credentials, a duplicate label, an insecure URL or an unknown venue."""


class MissingRateError(BastionBalanceError):
    """A balance's currency has no conversion rate, so it cannot be valued in USD."""

    def __init__(self, message: str, *, currency: str, venue: str | None = None) -> None:
        super().__init__(message, venue=venue)
        self.currency = currency


class TransportError(BastionBalanceError):
    """The request did not get an answer: connection, TLS or read failure (after retries)."""

    transient = True


class DeadlineExceededError(TransportError):
    """The fetch's overall deadline (``timeout=``) passed, retries and waits included."""

    transient = False


class ExchangeAPIError(BastionBalanceError):
    """The venue answered and refused the request.

    ``code`` is the venue's own error code or string, ``status_code`` the HTTP status.
    """

    def __init__(
        self,
        message: str,
        *,
        venue: str | None = None,
        code: str | int | None = None,
        status_code: int | None = None,
    ) -> None:
        super().__init__(message, venue=venue)
        self.code = code
        self.status_code = status_code


class AuthenticationError(ExchangeAPIError):
    """Bad key, bad signature, missing permission, or an expired token. Never retried."""


class RateLimitedError(ExchangeAPIError):
    """The venue (or our own limiter, past the deadline) says to slow down.

    ``retry_after`` is the wait in seconds the venue asked for, when it said.
    """

    transient = True

    def __init__(
        self,
        message: str,
        *,
        venue: str | None = None,
        code: str | int | None = None,
        status_code: int | None = None,
        retry_after: float | None = None,
        transient: bool = True,
    ) -> None:
        super().__init__(message, venue=venue, code=code, status_code=status_code)
        self.retry_after = retry_after
        self.transient = transient


class ServiceUnavailableError(ExchangeAPIError):
    """Busy, maintenance, or a 5xx answer: worth trying again later."""

    transient = True


class UnexpectedResponseError(BastionBalanceError):
    """The answer is not what the venue documents: not JSON, wrong shape, or a bad number.

    ``field`` names where in the payload, ``value`` the offending value (shortened).
    """

    def __init__(
        self,
        message: str,
        *,
        venue: str | None = None,
        field: str | None = None,
        value: object = None,
    ) -> None:
        text = repr(value)
        if len(text) > _MAX_VALUE_CHARS:
            text = text[:_MAX_VALUE_CHARS] + "..."
        if field is not None:
            message = f"{message} (venue {venue}, field {field}, value {text})"
        super().__init__(message, venue=venue)
        self.field = field
        self.value = text if len(repr(value)) > _MAX_VALUE_CHARS else value


class ResponseTooLargeError(UnexpectedResponseError):
    """The response body passed the size cap (default 4 MiB)."""
