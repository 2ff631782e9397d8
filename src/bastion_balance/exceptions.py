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
    │   └── ServiceUnavailableError  busy, maintenance, 5xx after retries (.retry_after)
    ├── UnexpectedResponseError   not JSON, HTML, wrong shape, bad number (.venue, .field, .value)
    │   └── ResponseTooLargeError  body over the cap (default 4 MiB)
    ├── HistoryError              the balance history: nothing recorded yet, database unusable
    └── AggregateError            strict=True: an ExceptionGroup of the failed accounts
                                  (.errors label -> exception, .portfolio the partial result)

``ConfigurationError`` also covers any other argument the library cannot use (``rates=``,
``retry=``, a list of providers that is not one, a value ``dumps()`` cannot write); its message
says what to pass instead. ``AggregateError`` is also a built-in ``ExceptionGroup``, so
``except* TransportError`` picks the failures of one kind out of it, and
``except BastionBalanceError`` catches it whole.

Exceptions carry context as attributes (never a secret), pickle, and are chained with
``raise ... from exc`` where they translate a lower-level error.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, TypeAlias

if TYPE_CHECKING:
    from ._models import Portfolio

    _Matcher: TypeAlias = (
        type[BaseException] | tuple[type[BaseException], ...] | Callable[[BaseException], bool]
    )

__all__ = [
    "AggregateError",
    "AuthenticationError",
    "BastionBalanceError",
    "ConfigurationError",
    "DeadlineExceededError",
    "ExchangeAPIError",
    "HistoryError",
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

    ``transient`` tells the retry layer whether trying again may help. ``label`` is the
    account's label once a client has fetched it (its message then starts with the label),
    ``None`` for errors not tied to one account.
    """

    transient: bool = False
    label: str | None = None

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

    ``code`` is the venue's own error code or string, ``status_code`` the HTTP status, and
    ``retry_after`` the wait in seconds the venue asked for (``Retry-After``, a reset time), when
    it said; the retry layer waits at least that long before trying a transient one again.
    """

    def __init__(
        self,
        message: str,
        *,
        venue: str | None = None,
        code: str | int | None = None,
        status_code: int | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message, venue=venue)
        self.code = code
        self.status_code = status_code
        self.retry_after = retry_after


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
        super().__init__(message, venue=venue, code=code, status_code=status_code, retry_after=retry_after)
        self.transient = transient


class ServiceUnavailableError(ExchangeAPIError):
    """Busy, maintenance, or a 5xx answer: worth trying again later.

    ``retry_after`` is the wait in seconds the venue asked for (a 503's ``Retry-After``), when
    it said; the retry layer waits at least that long.
    """

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


class HistoryError(BastionBalanceError):
    """The balance history cannot answer: nothing recorded yet (nothing to compare), a database
    that cannot be opened or written, or one made by a newer version of bastion_balance."""


class AggregateError(ExceptionGroup[Exception], BastionBalanceError):
    """``aggregate(..., strict=True)``: some accounts failed. A built-in ``ExceptionGroup``.

    ``exceptions`` are the failures, ``errors`` maps each failed label to its exception (the
    same objects), and ``portfolio`` is the :class:`~bastion_balance.Portfolio` that
    ``strict=False`` would have returned, so nothing fetched is lost. ``except*`` and
    ``split()`` / ``subgroup()`` give back ``AggregateError`` objects whose ``errors`` hold only
    the labels of the exceptions they keep. It pickles like every error here.
    """

    errors: Mapping[str, Exception]
    portfolio: Portfolio | None

    def __new__(
        cls,
        message: str,
        exceptions: Sequence[Exception],
        *,
        errors: Mapping[str, Exception] | None = None,
        portfolio: Portfolio | None = None,
    ) -> AggregateError:
        return super().__new__(cls, message, exceptions)

    def __init__(
        self,
        message: str,
        exceptions: Sequence[Exception],
        *,
        errors: Mapping[str, Exception] | None = None,
        portfolio: Portfolio | None = None,
    ) -> None:
        # ExceptionGroup.__init__ does not call the next class's __init__: set what
        # BastionBalanceError.__init__ would.
        ExceptionGroup.__init__(self, message, exceptions)
        self.venue = None
        self.errors = dict(errors) if errors is not None else {}
        self.portfolio = portfolio

    def derive(self, excs: Sequence[Exception]) -> AggregateError:  # type: ignore[override]
        """The same group holding only ``excs`` (what ``split``, ``subgroup`` and ``except*`` call)."""
        ids = {id(exc) for exc in excs}
        kept = {label: exc for label, exc in self.errors.items() if id(exc) in ids}
        return AggregateError(self.message, excs, errors=kept, portfolio=self.portfolio)

    if TYPE_CHECKING:  # what derive() makes them return, for type checkers

        def split(  # type: ignore[override]
            self, matcher_value: _Matcher, /
        ) -> tuple[AggregateError | None, AggregateError | None]: ...

        def subgroup(self, matcher_value: _Matcher, /) -> AggregateError | None:  # type: ignore[override]
            ...
