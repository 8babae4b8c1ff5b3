"""``FlextUtilities``: the generator helpers named by the original design."""

from __future__ import annotations

from flext_ctx_aspects import _ids

__all__ = ["FlextUtilities"]


class FlextUtilities:
    """Utility namespaces."""

    class Generators:
        """Identifier generators (the configured generator, see ``Settings.id_generator``)."""

        @staticmethod
        def generate_correlation_id() -> str:
            """Return a new correlation id (32 lowercase hex characters by default)."""
            return _ids.new_id()

        @staticmethod
        def generate_request_id() -> str:
            """Return a new request id (32 lowercase hex characters by default)."""
            return _ids.new_id()

        @staticmethod
        def generate_span_id() -> str:
            """Return a new 16 hex character span id (a W3C parent-id)."""
            return _ids.generate_span_id()
