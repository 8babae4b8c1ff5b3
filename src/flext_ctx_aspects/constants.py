"""``FlextConstants``: header names and limits, one place for every magic value."""

from __future__ import annotations

from typing import Final

__all__ = ["FlextConstants"]


class FlextConstants:
    """Names and limits used across the library (read-only by convention)."""

    class Headers:
        """Header names written and read by propagation (matched case-insensitively)."""

        CORRELATION_ID: Final = "X-Correlation-Id"
        PARENT_CORRELATION_ID: Final = "X-Parent-Correlation-Id"
        SERVICE_NAME: Final = "X-Service-Name"
        SERVICE_VERSION: Final = "X-Service-Version"
        SERVICE_ENVIRONMENT: Final = "X-Service-Environment"
        REQUEST_ID: Final = "X-Request-Id"
        OPERATION_NAME: Final = "X-Operation-Name"
        USER_ID: Final = "X-User-Id"
        TRACEPARENT: Final = "traceparent"
        TRACESTATE: Final = "tracestate"
        BAGGAGE: Final = "baggage"

    class Limits:
        """Caps applied to inbound values; longer values are invalid."""

        MAX_ID_LENGTH: Final = 128
        MAX_NAME_LENGTH: Final = 256
        MAX_METADATA_ITEMS: Final = 64
        MAX_METADATA_KEY_LENGTH: Final = 128
        MAX_METADATA_VALUE_LENGTH: Final = 1024
        MAX_HEADER_VALUE_LENGTH: Final = 8192
        SUMMARY_ID_CHARS: Final = 8

    class Context:
        """Shapes of generated values."""

        ID_HEX_LENGTH: Final = 32
        SPAN_ID_HEX_LENGTH: Final = 16
        ENVIRONMENTS: Final = ("development", "staging", "production", "test")
