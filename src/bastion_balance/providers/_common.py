"""What every built-in provider shares: checked settings, JSON decoding, status mapping.

Venue-specific knowledge stays in each venue's module; this file holds only what is the same
for all of them.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Generator, Iterable, Mapping
from datetime import UTC, datetime
from decimal import Decimal
from email.utils import parsedate_to_datetime
from typing import Any, ClassVar, Final, NamedTuple, NoReturn, TypeAlias, TypeVar
from urllib.parse import unquote_plus

import attrs
import httpx

from .._convert import all_figures
from .._decimal import AmountError, loads, to_decimal
from .._protocol import Acquire, Effect, Release, Throttle
from .._state import RateLimiter, TokenCache, clock_offset, key_fingerprint, set_clock_offset, window_margin
from .._version import __version__
from ..exceptions import (
    AuthenticationError,
    ConfigurationError,
    ExchangeAPIError,
    RateLimitedError,
    ServiceUnavailableError,
    UnexpectedResponseError,
)

__all__ = [
    "USER_AGENT",
    "MASKED_PARAMS",
    "NoPickle",
    "WatchPace",
    "Secret",
    "SignedRequest",
    "SubFlow",
    "bearer_call",
    "cached_token",
    "check_base_url",
    "clock_corrected",
    "counter_pace",
    "credential",
    "decode_object",
    "environment_url",
    "error_body",
    "error_code",
    "error_text",
    "extra_figures",
    "integer_field",
    "label_or",
    "masked_url",
    "measure_clock_offset",
    "milliseconds",
    "now_utc",
    "one_of",
    "pace_budget",
    "parse_bearer_token",
    "printable",
    "retry_after_seconds",
    "send",
    "send_and_parse",
    "status_error",
    "throttled_call",
    "window_pace",
]

T = TypeVar("T")

#: A piece of a flow, run with ``yield from``: it yields effects and returns a ``T``.
SubFlow: TypeAlias = Generator[Effect, httpx.Response | None, T]

USER_AGENT: Final = f"bastion-balance/{__version__}"


class NoPickle:
    """Providers hold secrets: refuse pickling and copying (docs/decisions.md §19)."""

    __slots__ = ()

    def __reduce_ex__(self, protocol: object) -> NoReturn:
        msg = (
            f"{type(self).__name__} holds credentials and cannot be pickled or copied; "
            "build a new provider in the other process instead"
        )
        raise TypeError(msg)


class WatchPace(NamedTuple):
    """How often a watch (``bb.watch``) may fetch an account: the venue's published limit, as
    ``interval`` seconds between two balance fetches, for ``budget``.

    ``budget`` names what the venue counts the limit on (a credential, an IP, a firm); accounts
    watched together that share a budget share its pace, so each is fetched ``interval`` x their
    number apart. It is opaque: build it with :func:`pace_budget`, which keeps a key out of it.
    """

    budget: str
    interval: float


def pace_budget(venue: str, base_url: str, key_id: str) -> str:
    """The budget name of a limit counted per ``key_id`` (a key, ``"ip"``, a firm) at a base URL."""
    return f"{venue} {base_url.rstrip('/')} {key_fingerprint(key_id)}"


def window_pace(budget: str, limit: float, window: float, cost: float = 1) -> WatchPace:
    """The pace of a fetch costing ``cost`` under "``limit`` per ``window`` seconds", kept (as the
    sliding-window limiter keeps it) over a window a little longer than the venue's."""
    return WatchPace(budget, (window + window_margin(window)) * cost / limit)


def counter_pace(budget: str, decay: float, cost: float = 1) -> WatchPace:
    """The pace of a fetch costing ``cost`` under a call counter that decays ``decay`` per second."""
    return WatchPace(budget, cost / decay)


def is_loopback(host: str) -> bool:
    """True for localhost and loopback addresses (tests and simulators)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_base_url(value: str | None, *, default: str, venue: str, name: str = "base_url") -> str:
    """A base URL without a trailing slash; credentials only go over https or to loopback."""
    if value is None:
        return default
    if not isinstance(value, str):
        msg = f"{venue}: {name} must be a string URL, got {type(value).__name__}"
        raise ConfigurationError(msg)
    try:
        url = httpx.URL(value)
    except (httpx.InvalidURL, TypeError) as exc:
        msg = f"{venue}: {name} is not a URL: {value!r}"
        raise ConfigurationError(msg) from exc
    if url.scheme not in {"https", "http"} or not url.host:
        msg = f"{venue}: {name} must be an absolute https URL, got {value!r}"
        raise ConfigurationError(msg)
    if url.scheme == "http" and not is_loopback(url.host):
        msg = f"{venue}: {name} must use https (credentials are only sent over TLS), got {value!r}"
        raise ConfigurationError(msg)
    if url.query or url.fragment or url.userinfo:
        msg = f"{venue}: {name} must not carry a query, fragment or user info"
        raise ConfigurationError(msg)
    return str(url).rstrip("/")


def credential(value: object, *, venue: str, name: str) -> str:
    """A credential string: present, and free of whitespace that would break a header.

    The message names the parameter, never the value.
    """
    if not isinstance(value, str) or not value:
        msg = f"{venue}: {name} is required (a non-empty string)"
        raise ConfigurationError(msg)
    if value != value.strip() or any(ch in value for ch in "\r\n\t\0"):
        msg = f"{venue}: {name} has surrounding whitespace or control characters"
        raise ConfigurationError(msg)
    return value


def label_or(value: object, default: str) -> str:
    """The caller's label, or the venue's name."""
    if value is None:
        return default
    if not isinstance(value, str) or not value.strip():
        msg = f"label must be a non-empty string, got {value!r}"
        raise ConfigurationError(msg)
    return value


def now_utc() -> datetime:
    """The aware UTC time a balance was fetched."""
    return datetime.now(UTC)


def retry_after_seconds(headers: httpx.Headers, now: Callable[[], datetime] = now_utc) -> float | None:
    """The ``Retry-After`` header in seconds (delta or HTTP date), or None."""
    value = headers.get("retry-after")
    if value is None:
        return None
    try:
        seconds = to_decimal(value.strip())
    except AmountError:
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        return max(0.0, (when - now()).total_seconds())
    return max(0.0, float(seconds))  # float-ok: a wait in seconds, not money


def environment_url(
    hosts: Callable[[str], str | None], *, venue: str, name: str = "base_url", missing: str = "give it"
) -> attrs.Converter[str | None, str]:
    """A converter for a URL setting whose default depends on the ``environment`` setting.

    Given (a string), the URL is checked like every base URL; left out or ``None``, it is
    ``hosts(environment)``. ``environment`` must be declared before this field (attrs converts
    fields in order). An environment without a published host (``hosts`` returns None) is a
    ``ConfigurationError`` that says ``missing``.
    """

    def convert(value: str | None, instance: Any) -> str:  # noqa: ANN401  # the provider being built
        environment: str = instance.environment
        default = hosts(environment)
        if value is None and default is None:
            msg = f"{venue}: environment={environment!r} has no published host: {missing} ({name} is missing)"
            raise ConfigurationError(msg)
        return check_base_url(value, default=default or "", venue=venue, name=name)

    return attrs.Converter(convert, takes_self=True)


def integer_field(value: object, *, venue: str, field: str) -> int:
    """A JSON integer, or a decimal string of one (venues send both), else UnexpectedResponseError."""
    try:
        number = to_decimal(value)
    except AmountError as exc:
        msg = f"bad number: {exc.reason}"
        raise UnexpectedResponseError(msg, venue=venue, field=field, value=value) from exc
    if number != number.to_integral_value():
        msg = "expected an integer"
        raise UnexpectedResponseError(msg, venue=venue, field=field, value=value)
    return int(number)


def error_body(response: httpx.Response, *, venue: str) -> dict[str, Any]:
    """An error answer's body as a JSON object, or ``{}`` (error pages are often HTML or empty)."""
    try:
        return decode_object(response, venue=venue)
    except UnexpectedResponseError:
        return {}


#: An error code larger than this is not a code: ``1e999999`` would be a million-digit int.
_CODE_LIMIT: Final = 10**18


def error_code(value: object) -> str | int | None:
    """A venue's error code member: a non-empty string as sent, a whole number as ``int``, else None."""
    if isinstance(value, str):
        return value or None
    if isinstance(value, int | Decimal) and not isinstance(value, bool):
        number = Decimal(value)
        # copy_abs(), not abs(): abs() rounds to the context, and 1E+99999999999 overflows it.
        if number.is_finite() and number == number.to_integral_value() and number.copy_abs() < _CODE_LIMIT:
            return int(number)
    return None


def error_text(body: Mapping[str, Any], *names: str) -> str | None:
    """The first member of ``names`` in an error body that is a non-blank string, or None."""
    for name in names:
        text = body.get(name)
        if isinstance(text, str) and text.strip():
            return text
    return None


def printable(text: str, limit: int = 200) -> str:
    """``text`` on one line, whitespace collapsed, cut at ``limit`` characters (for error messages)."""
    flat = " ".join(text.split())
    if len(flat) > limit:
        flat = flat[:limit] + "..."
    return flat or "(empty body)"


def send(request: httpx.Request) -> SubFlow[httpx.Response]:
    """Sub-flow: send ``request`` and return its response (body read, size capped)."""
    response = yield request
    if response is None:  # a driver bug, not a venue answer: say so rather than fail later
        msg = "the driver answered a request with None"
        raise TypeError(msg)
    return response


def send_and_parse(request: httpx.Request, parse: Callable[[httpx.Response], T]) -> SubFlow[T]:
    """Sub-flow: send ``request`` and return ``parse(response)``."""
    return parse((yield from send(request)))


def throttled_call(
    limiter: RateLimiter,
    build: Callable[[], httpx.Request],
    parse: Callable[[httpx.Response], T],
    *,
    cost: float = 1,
    note: Callable[[httpx.Response], None] | None = None,
    drains: Callable[[RateLimitedError], bool] = lambda _exc: True,
) -> SubFlow[T]:
    """Sub-flow: wait for ``limiter``, then build, send and parse one request.

    ``build`` runs after the wait, so a timestamp or nonce it signs is fresh. ``note`` sees
    every answer first (a venue's used-weight header). When ``parse`` raises the venue's
    rate-limit error (and ``drains`` agrees it means this limiter's budget), the limiter is
    drained: the venue says the budget is spent, so the next fetch waits instead of being
    refused too.
    """
    yield Throttle(limiter, cost)
    response = yield from send(build())
    if note is not None:
        note(response)
    try:
        return parse(response)
    except RateLimitedError as exc:
        if drains(exc):
            limiter.drain(limiter.capacity)
        raise


def clock_corrected(
    call: Callable[[Callable[[], int]], SubFlow[T]],
    *,
    venue: str,
    base_url: str,
    now_ms: Callable[[], int],
    is_clock_error: Callable[[AuthenticationError], bool],
    resync: Callable[[], SubFlow[None]],
) -> SubFlow[T]:
    """Sub-flow: ``call(now)``, where ``now()`` is the venue's time in ms; one resync on a clock error.

    ``now()`` is the local clock plus the offset kept for ``base_url`` (read when called, so a
    request signed after a wait uses the latest offset). docs/decisions.md §8 and §19: when the
    venue refuses the timestamp, ``resync`` reads its server time once (see
    :func:`measure_clock_offset`), and the call is signed afresh and made exactly once more; a
    second refusal is raised.
    """

    def now() -> int:
        return now_ms() + (clock_offset(venue, base_url) or 0)

    for attempt in range(2):
        try:
            return (yield from call(now))
        except AuthenticationError as exc:
            if attempt or not is_clock_error(exc):
                raise
        yield from resync()
    raise AssertionError("unreachable")  # pragma: no cover


def bearer_call(
    token: Callable[[], SubFlow[tuple[str, bool]]],
    call: Callable[[str], SubFlow[T]],
    *,
    cache: TokenCache,
    is_refused: Callable[[AuthenticationError], bool],
) -> SubFlow[T]:
    """Sub-flow: ``call(token)`` with a bearer token; one refresh when a cached token is refused.

    ``token`` is the token sub-flow (:func:`cached_token`), returning ``(token, came from the
    cache)``. A refused token (``is_refused``: the venue's 401) is dropped from the cache; if it
    came from the cache, a new one is fetched and the call made exactly once more; a token just
    issued that is refused is raised (docs/decisions.md §8).
    """
    value, cached = yield from token()
    for attempt in range(2):
        try:
            return (yield from call(value))
        except AuthenticationError as exc:
            if not is_refused(exc):
                raise
            cache.invalidate(value)
            if attempt or not cached:
                raise
        value, _ = yield from token()
    raise AssertionError("unreachable")  # pragma: no cover


def decode_object(response: httpx.Response, *, venue: str) -> dict[str, Any]:
    """The response body as a JSON object (numbers as Decimal), or UnexpectedResponseError."""
    payload = loads(response.content, venue=venue)
    if not isinstance(payload, dict):
        msg = f"expected a JSON object, got {type(payload).__name__} (HTTP {response.status_code})"
        raise UnexpectedResponseError(msg, venue=venue)
    return payload


def status_error(
    response: httpx.Response,
    *,
    venue: str,
    message: str,
    code: str | int | None = None,
) -> ExchangeAPIError:
    """The exception for a non-2xx answer, by HTTP status (venues refine it by code).

    A 429's and a 5xx's ``Retry-After`` (seconds or an HTTP date) becomes ``retry_after``, so
    the retry waits at least as long as the venue asked.
    """
    status = response.status_code
    text = f"{venue}: HTTP {status}: {message}"
    if status in {401, 403}:
        return AuthenticationError(text, venue=venue, code=code, status_code=status)
    if status == 429:
        return RateLimitedError(
            text,
            venue=venue,
            code=code,
            status_code=status,
            retry_after=retry_after_seconds(response.headers),
        )
    if status >= 500 or status == 408:
        return ServiceUnavailableError(
            text,
            venue=venue,
            code=code,
            status_code=status,
            retry_after=retry_after_seconds(response.headers),
        )
    return ExchangeAPIError(text, venue=venue, code=code, status_code=status)


def extra_figures(result: Mapping[str, Any], *, skip: set[str]) -> dict[str, Decimal]:
    """Every numeric top-level figure of ``result`` except ``skip``, by the venue's names.

    Fields that are absent, empty or not numbers (timestamps, flags, objects) are left out.
    """
    figures = all_figures(result)
    for name in skip:
        figures.pop(name, None)
    return figures


def parse_bearer_token(response: httpx.Response, *, venue: str, default_lifetime: float) -> tuple[str, float]:
    """``(access_token, lifetime in seconds)`` of an OAuth2-style token answer (status checked).

    A missing ``expires_in`` means ``default_lifetime``; a token that is empty or has spaces, a
    ``token_type`` other than Bearer, and a lifetime that is not a positive number are refused.
    The token itself never appears in an error, nor in the locals of a traceback: a body that
    is not a JSON object is refused without quoting it, and the token is held as a ``Secret``.
    """
    try:
        payload = decode_object(response, venue=venue)
    except UnexpectedResponseError:
        payload = None  # the message and its chained error would quote the body: a token
    if payload is None:
        msg = "the token answer is not a JSON object"
        raise UnexpectedResponseError(msg, venue=venue, field="$", value="<hidden>")
    raw = payload.pop("access_token", None)
    token = Secret(raw) if isinstance(raw, str) else raw
    del raw
    if not isinstance(token, str) or not token or any(ch.isspace() for ch in token):
        msg = "the token answer has no usable access_token"
        raise UnexpectedResponseError(msg, venue=venue, field="$.access_token", value="<hidden>")
    kind = payload.get("token_type", "Bearer")
    if not isinstance(kind, str) or kind.lower() != "bearer":
        msg = "the token answer is not a bearer token"
        raise UnexpectedResponseError(msg, venue=venue, field="$.token_type", value=kind)
    expires = payload.get("expires_in")
    if expires is None:
        return token, default_lifetime
    try:
        lifetime = to_decimal(expires)
    except AmountError:
        lifetime = Decimal(0)
    if lifetime <= 0:
        msg = "expires_in is not a positive number of seconds"
        raise UnexpectedResponseError(msg, venue=venue, field="$.expires_in", value=expires)
    return token, float(lifetime)  # float-ok: a lifetime in seconds, not money


def cached_token(
    cache: TokenCache,
    *,
    margin: float,
    request: Callable[[], httpx.Request],
    parse: Callable[[httpx.Response], tuple[str, float]],
    limiter: RateLimiter | None = None,
) -> Generator[Effect, httpx.Response | None, tuple[str, bool]]:
    """Sub-flow: a bearer token valid ``margin`` more seconds, and whether it came from the cache.

    Only one fetch per credential asks for a token at a time: the others wait for the cache's
    refresh lock and then find the new token (the look after taking the lock is what makes a
    hundred concurrent fetches cost one token request). ``limiter`` throttles token requests;
    it is asked while the lock is held, so only a fetch that really needs a token spends the
    budget, and a ``RateLimitedError`` from the token endpoint marks it as spent.
    """
    token = cache.get(margin)
    if token is not None:
        return token, True
    yield Acquire(cache.refresh_lock)  # on an error the driver releases it
    token = cache.get(margin)  # another fetch may have refreshed it while we waited
    if token is not None:
        yield Release(cache.refresh_lock)
        return token, True
    if limiter is None:
        token, lifetime = parse((yield from send(request())))
    else:
        token, lifetime = yield from throttled_call(limiter, request, parse)
    token = Secret(token)  # a suspended or failing frame's repr of it shows '***'
    cache.store(token, lifetime)
    yield Release(cache.refresh_lock)
    return token, False


def one_of(value: object, options: Iterable[str], *, venue: str, name: str) -> str:
    """``value`` if it is one of ``options`` (a setting such as ``environment``), else ConfigurationError."""
    choices = list(options)
    if not isinstance(value, str) or value not in choices:
        msg = f"{venue}: {name} must be one of {', '.join(choices)}, got {value!r}"
        raise ConfigurationError(msg)
    return value


def milliseconds(value: object, *, venue: str, name: str, most: int) -> int:
    """``value`` if it is a whole number of milliseconds in ``1..most``, else ConfigurationError."""
    if isinstance(value, bool) or not isinstance(value, int) or not 0 < value <= most:
        msg = f"{venue}: {name} must be an integer of milliseconds in 1..{most}, got {value!r}"
        raise ConfigurationError(msg)
    return value


def measure_clock_offset(
    venue: str,
    base_url: str,
    *,
    now_ms: Callable[[], int],
    request: httpx.Request,
    parse: Callable[[httpx.Response], int],
) -> Generator[Effect, httpx.Response | None, None]:
    """Sub-flow: read the venue's server time once and keep the offset for ``base_url``.

    docs/decisions.md §8 and §19: done lazily, after the venue refused a timestamp. The offset is the
    server's time minus the midpoint of the local clock around the request.
    """
    sent = now_ms()
    server = parse((yield from send(request)))
    set_clock_offset(venue, base_url, server - (sent + now_ms()) // 2)


class Secret(str):
    """A credential, bearer token or signature: the real text everywhere but in ``repr``.

    ``str()``, f-strings, comparison, hashing and ``encode()`` give the real value, so it goes
    into headers and request bodies unchanged; ``repr()`` is ``'***'``, so a traceback that
    records its frames' local variables (``capture_locals=True``, error trackers) and the reprs
    of objects holding one show nothing.
    """

    __slots__ = ()

    def __repr__(self) -> str:
        return "'***'"


#: Query parameters whose values :func:`masked_url` hides (compared case-insensitively).
MASKED_PARAMS: Final = frozenset({"signature", "sign", "sig", "access_token", "token", "api_key", "secret"})


def masked_url(url: httpx.URL, names: frozenset[str] = MASKED_PARAMS) -> str:
    """``url`` as text with the values of the query parameters in ``names`` replaced by ``***``."""
    if not url.query:
        return str(url)
    parts = []
    for part in url.query.decode("ascii", "replace").split("&"):
        name, sep, _ = part.partition("=")
        parts.append(f"{name}=***" if sep and unquote_plus(name).lower() in names else part)
    return f"{url.copy_with(query=None, fragment=None)}?{'&'.join(parts)}"


class SignedRequest(httpx.Request):
    """An ``httpx.Request`` that carries credentials; its ``repr`` hides them.

    ``repr`` shows the method and the URL with signature-like query values masked (Binance
    signs the query string) and never a header; a plain ``httpx.Request`` shows its full URL.
    It is sent like any request: httpx and the drivers see an ``httpx.Request``.
    """

    #: Query parameters whose values ``repr`` hides; a subclass may add its venue's own.
    masked_params: ClassVar[frozenset[str]] = MASKED_PARAMS

    def __repr__(self) -> str:
        return f"<{type(self).__name__}({self.method!r}, {masked_url(self.url, self.masked_params)!r})>"
