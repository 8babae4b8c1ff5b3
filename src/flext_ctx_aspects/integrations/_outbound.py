"""What the outbound integrations (HTTP clients, message publishing) share: option checks."""

from __future__ import annotations

from flext_ctx_aspects import _options
from flext_ctx_aspects.errors import ConfigError
from flext_ctx_aspects.propagation import Format, inject

__all__ = ["outbound_formats"]


def outbound_formats(where: str, formats: object) -> tuple[str | Format, ...] | None:
    """Check an outbound ``formats`` option now, not per request; errors name ``where``.

    Raises:
        ConfigError: Not a list of format names or `Format` objects, or an unknown name.
    """
    if formats is None:
        return None
    checked = _options.check_names(
        where,
        "formats",
        formats,
        expected="a list of format names or Format objects",
        item_types=(str, Format),
    )
    try:
        inject({}, formats=checked)
    except ConfigError as error:
        raise ConfigError(where, error.key, error.expected, error.got) from None
    return checked
