"""What the ASGI and WSGI middlewares share: options, the per-request context, the record.

A request runs in a fresh context built from its headers (see
`snapshot`): nothing of an earlier request on
the same connection, thread or task is visible. It is timed by the machinery of ``@timed``
(one operation record through the shared timed-block helper), with the
method, the path (when it is clean) and the response status code in the record's metadata.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from flext_ctx_aspects import _emit, _state
from flext_ctx_aspects._diagnostics import report_internal_error
from flext_ctx_aspects._validate import validate_name
from flext_ctx_aspects.constants import FlextConstants
from flext_ctx_aspects.errors import InvalidValueError
from flext_ctx_aspects.propagation import Extracted, Format, extract
from flext_ctx_aspects.propagation.headers import Inbound
from flext_ctx_aspects.typing import Getter

__all__ = [
    "METADATA_METHOD",
    "METADATA_PATH",
    "METADATA_STATUS",
    "RequestRecorder",
    "ServerOptions",
    "refusal_text",
]

METADATA_METHOD: Final = "http.method"
METADATA_PATH: Final = "http.path"
METADATA_STATUS: Final = "http.status_code"

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
        record_name: Makes the operation record's name from the request method.
    """

    identity: Mapping[str, Any] = field(default_factory=dict)
    strict: bool | None = None
    trusted: bool | None = None
    formats: tuple[str | Format, ...] | None = None
    correlation_sources: tuple[str, ...] | None = None
    echo_header: str | None = FlextConstants.Headers.CORRELATION_ID
    record_name: Callable[[str], str] = "HTTP {}".format

    @classmethod
    def build(
        cls,
        *,
        service_name: str | None,
        service_version: str | None,
        service_environment: str | None,
        strict: bool | None,
        trusted: bool | None,
        formats: Iterable[str | Format] | None,
        correlation_sources: Iterable[str] | None,
        echo_header: str | None,
    ) -> ServerOptions:
        """Validate the middleware arguments.

        Raises:
            InvalidValueError: A service value has control characters or is too long.
            ValueError: ``echo_header`` is not an HTTP token.
            ConfigError: An unknown format name or correlation source.
        """
        identity: dict[str, Any] = {}
        if service_name is not None:
            identity["service_name"] = validate_name("service_name", service_name)
            identity["service_version"] = (
                None if service_version is None else validate_name("version", service_version)
            )
            identity["service_environment"] = (
                None
                if service_environment is None
                else validate_name("environment", service_environment)
            )
        if echo_header is not None and (not echo_header or not _TOKEN.issuperset(echo_header)):
            raise ValueError(f"echo_header must be an HTTP header name (got {echo_header!r})")
        # Checked now, not on the first request: an unknown name or source is a typo.
        extract({}, formats=formats, correlation_sources=correlation_sources)
        return cls(
            identity=identity,
            strict=strict,
            trusted=trusted,
            formats=None if formats is None else tuple(formats),
            correlation_sources=None if correlation_sources is None else tuple(correlation_sources),
            echo_header=echo_header,
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

    __slots__ = ("block", "status")

    def __init__(self, options: ServerOptions, method: object, path: object) -> None:
        method_name = _name(method)
        spec = _emit.TimingSpec(
            name=options.record_name(method_name), kind="block", min_duration_ns=0, keep_errors=True
        )
        metadata: dict[str, Any] = {METADATA_METHOD: method_name}
        if isinstance(path, str):
            with contextlib.suppress(InvalidValueError):  # a hostile path is not recorded
                metadata[METADATA_PATH] = validate_name("path", path)
        self.block = _emit.TimedBlock(spec, metadata)
        self.status: int | None = None

    @property
    def metadata(self) -> dict[str, Any]:
        """The request's operation metadata (``add_operation_metadata`` writes here)."""
        return self.block.metadata

    def begin(self) -> None:
        """Make this request the running operation and start its clock."""
        self.block.begin()

    def finish(self, error: BaseException | None) -> None:
        """Record the request (call inside its context), then leave the running operation."""
        metadata = self.block.metadata
        if self.status is not None:
            metadata[METADATA_STATUS] = self.status
        elif isinstance(error, Exception):
            metadata[METADATA_STATUS] = 500  # what the server answers for an unhandled error
        self.block.end(error)
