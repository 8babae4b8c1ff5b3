"""What the ASGI and WSGI middlewares share: options, the per-request context, the record.

A request runs in a fresh context built from its headers (see
`snapshot`): nothing of an earlier request on
the same connection, thread or task is visible. It is timed by the machinery of ``@timed``
(one operation record through the shared timed-block helper), with the
method, the path (when it is clean) and the response status code in the record's metadata.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from flext_ctx_aspects import _emit, _options, _state
from flext_ctx_aspects._diagnostics import report_internal_error
from flext_ctx_aspects._validate import validate_name
from flext_ctx_aspects.constants import FlextConstants
from flext_ctx_aspects.errors import ConfigError, InvalidValueError
from flext_ctx_aspects.propagation import Extracted, Format, extract
from flext_ctx_aspects.propagation.headers import Inbound
from flext_ctx_aspects.typing import Getter

__all__ = [
    "DEFAULT_ERROR_STATUSES",
    "METADATA_METHOD",
    "METADATA_PATH",
    "METADATA_ROUTE",
    "METADATA_STATUS",
    "RecordName",
    "RequestRecorder",
    "ServerOptions",
    "clean_route",
    "default_record_name",
    "refusal_text",
]

METADATA_METHOD: Final = "http.method"
METADATA_PATH: Final = "http.path"
METADATA_STATUS: Final = "http.status_code"
METADATA_ROUTE: Final = "http.route"
_FALLBACK_NAME: Final = "HTTP"

_TOKEN: Final = frozenset(
    "!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
)
_MAX_METHOD_LENGTH: Final = 16
_VISIBLE: Final = frozenset(chr(code) for code in range(0x20, 0x7F))
_MAX_REFUSAL_PART: Final = 120


def _name(method: object) -> str:
    if (
        isinstance(method, str)
        and 0 < len(method) <= _MAX_METHOD_LENGTH
        and _TOKEN.issuperset(method)
    ):
        return method.upper()
    return "OTHER"


RecordName = Callable[[str, "str | None"], str]
"""``record_name(method, route) -> name``: ``route`` is the route template or None."""


def default_record_name(method: str, route: str | None) -> str:
    """``HTTP GET /users/{user_id}`` when the route template is known, else ``HTTP GET``.

    The raw path is never used: ``/users/1``, ``/users/2``... would each make a record name
    of their own (unbounded cardinality in statistics and metrics).
    """
    return f"HTTP {method}" if route is None else f"HTTP {method} {route}"


DEFAULT_ERROR_STATUSES: Final = frozenset(range(500, 600))


@dataclass(frozen=True, slots=True)
class ServerOptions:
    """Validated middleware configuration (programming errors raise at construction).

    Attributes:
        identity: Field name -> value for the configured service identity.
        strict: Per-middleware strict mode; None follows ``Settings.strict_validation``.
        trusted: Accept ``X-User-Id`` from callers; None follows the settings.
        formats: Header formats read (None: the defaults).
        correlation_sources: Correlation id priority; None follows the settings.
        echo_header: Response header carrying the correlation id back; None disables it.
        record_name: Makes the operation record's name from the method and route template.
        error_statuses: Response status codes recorded as ``status="error"``.
    """

    identity: Mapping[str, Any] = field(default_factory=dict)
    strict: bool | None = None
    trusted: bool | None = None
    formats: tuple[str | Format, ...] | None = None
    correlation_sources: tuple[str, ...] | None = None
    echo_header: str | None = FlextConstants.Headers.CORRELATION_ID
    record_name: RecordName = default_record_name
    error_statuses: frozenset[int] = DEFAULT_ERROR_STATUSES

    @classmethod
    def build(
        cls,
        where: str,
        *,
        service_name: object,
        service_version: object,
        service_environment: object,
        strict: object,
        trusted: object,
        formats: object,
        correlation_sources: object,
        echo_header: object,
        record_name: object,
        error_statuses: object,
    ) -> ServerOptions:
        """Validate the middleware arguments (``where`` names the middleware in errors).

        Raises:
            ConfigError: An option of the wrong type, an unknown format name or
                correlation source, an ``echo_header`` that is not a header name, a status
                that is not an int from 100 to 599.
            InvalidValueError: A service value has control characters or is too long.
        """
        identity: dict[str, Any] = {}
        name = _options.check_optional_str(where, "service_name", service_name)
        version = _options.check_optional_str(where, "service_version", service_version)
        environment = _options.check_optional_str(where, "service_environment", service_environment)
        if name is not None:
            identity["service_name"] = validate_name("service_name", name)
            identity["service_version"] = (
                None if version is None else validate_name("service_version", version)
            )
            identity["service_environment"] = (
                None if environment is None else validate_name("service_environment", environment)
            )
        strict = _options.check_optional_bool(where, "strict", strict)
        trusted = _options.check_optional_bool(where, "trusted", trusted)
        echo = _options.check_optional_str(where, "echo_header", echo_header)
        if echo is not None and (not echo or not _TOKEN.issuperset(echo)):
            raise ConfigError(
                where, "echo_header", "an HTTP header name (or None)", _options.describe(echo)
            )
        format_list = (
            None
            if formats is None
            else _options.check_names(
                where,
                "formats",
                formats,
                expected="a list of format names or Format objects",
                item_types=(str, Format),
            )
        )
        source_list = (
            None
            if correlation_sources is None
            else _options.check_names(where, "correlation_sources", correlation_sources)
        )
        namer = _options.check_callable(
            where,
            "record_name",
            default_record_name if record_name is None else record_name,
            expected="a function (method, route) -> str",
        )
        statuses = _options.check_names(
            where,
            "error_statuses",
            DEFAULT_ERROR_STATUSES if error_statuses is None else error_statuses,
            expected="a collection of int status codes, e.g. range(500, 600)",
            item_types=(int,),
        )
        for status in statuses:
            if isinstance(status, bool) or not 100 <= status <= 599:
                raise ConfigError(
                    where, "error_statuses", "int status codes from 100 to 599", repr(status)
                )
        # Checked now, not on the first request: an unknown name or source is a typo. The
        # error names this middleware and its keyword, not the function checking them.
        try:
            extract({}, formats=format_list, correlation_sources=source_list)
        except ConfigError as error:
            raise ConfigError(where, error.key, error.expected, error.got) from None
        return cls(
            identity=identity,
            strict=strict,
            trusted=trusted,
            formats=format_list,
            correlation_sources=source_list,
            echo_header=echo,
            record_name=namer,
            error_statuses=frozenset(statuses),
        )

    def extract(
        self, carrier: object, getter: Getter
    ) -> tuple[Extracted, InvalidValueError | None]:
        """Extract the request's context; a strict-mode refusal is returned, never raised."""
        try:
            return (
                extract(
                    carrier,
                    getter=getter,
                    formats=self.formats,
                    strict=self.strict,
                    trusted=self.trusted,
                    correlation_sources=self.correlation_sources,
                ),
                None,
            )
        except InvalidValueError as error:
            return Extracted(Inbound()), error
        except Exception as error:  # the library's own failure: the request goes on
            report_internal_error("extracting request context", error)
            return Extracted(Inbound()), None

    def snapshot(self, extracted: Extracted) -> _state.Snapshot:
        """Build the request's fresh context: inbound values, new ids, service identity."""
        return extracted.build_snapshot(
            fresh=True, ensure_correlation=True, ensure_request_id=True, overrides=self.identity
        )


def refusal_text(error: InvalidValueError) -> str:
    """Return the body of a 400 response for a refused context: never the raw value."""

    def clean(text: str) -> str:
        return "".join(c for c in text if c in _VISIBLE)[:_MAX_REFUSAL_PART]

    return f"invalid request context: {clean(error.field)}: {clean(error.reason)}\n"


class RequestRecorder:
    """Times one request and sends its operation record; the caller provides the context."""

    __slots__ = ("block", "method", "options", "route", "status")

    def __init__(self, options: ServerOptions, method: object, path: object) -> None:
        method_name = _name(method)
        self.options = options
        self.method = method_name
        spec = _emit.TimingSpec(
            name=_FALLBACK_NAME, kind="block", min_duration_ns=0, keep_errors=True
        )
        metadata: dict[str, Any] = {METADATA_METHOD: method_name}
        if isinstance(path, str):
            with contextlib.suppress(InvalidValueError):  # a hostile path is not recorded
                metadata[METADATA_PATH] = validate_name("path", path)
        self.block = _emit.TimedBlock(spec, metadata)
        self.status: int | None = None
        self.route: str | None = None

    @property
    def metadata(self) -> dict[str, Any]:
        """The request's operation metadata (``add_operation_metadata`` writes here)."""
        return self.block.metadata

    def begin(self) -> None:
        """Make this request the running operation and start its clock."""
        self.block.begin()

    def finish(self, error: BaseException | None) -> None:
        """Record the request (call inside its context), then leave the running operation.

        The record is named by ``record_name(method, route)`` now that routing has run, and
        its status is ``"error"`` when the response status is one of ``error_statuses``
        (5xx by default) even though no exception reached the middleware (a framework
        turned it into a response).
        """
        block = self.block
        metadata = block.metadata
        status = self.status
        if status is None and isinstance(error, Exception):
            status = 500  # what the server answers for an unhandled error
        if status is not None:
            metadata[METADATA_STATUS] = status
        route = self.route
        if route is not None:
            metadata[METADATA_ROUTE] = route
        name = _record_name(self.options.record_name, self.method, route)
        block.spec = block.spec._replace(name=name)
        block.end(error, failed=status in self.options.error_statuses)


def _record_name(namer: RecordName, method: str, route: str | None) -> str:
    # The user's naming function must not lose the record: a failure or a value that is
    # not a name is reported and the default name used.
    try:
        name = namer(method, route)
    except Exception as exc:
        report_internal_error("naming a request record (record_name)", exc)
        return default_record_name(method, route)
    if not isinstance(name, str) or not name:
        report_internal_error(
            "naming a request record (record_name)",
            TypeError(f"record_name returned {name!r}, not a non-empty str"),
        )
        return default_record_name(method, route)
    return name


def clean_route(route: object) -> str | None:
    """Return a route template fit for a record name, or None."""
    if not isinstance(route, str) or not route:
        return None
    try:
        return validate_name("route", route)
    except InvalidValueError:
        return None
