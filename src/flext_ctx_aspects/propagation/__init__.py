"""Context propagation across process boundaries: HTTP headers, message headers, W3C formats.

``inject`` writes the current context into a carrier (only to allowed destinations);
``extract`` reads and validates an inbound carrier and opens a fresh scope from it. The wire
formats live in their own modules: `w3c` (Trace Context),
`baggage` (Baggage) and
`b3` (Zipkin B3). See ``docs/propagation.md``.
"""

from __future__ import annotations

from flext_ctx_aspects.propagation._api import (
    Destination,
    Extracted,
    Format,
    InboundScope,
    extract,
    inject,
    propagation_header_names,
)
from flext_ctx_aspects.propagation._carriers import (
    ASGI_HEADERS,
    ASGI_SCOPE,
    MAPPING,
    PAIRS,
    WSGI_ENVIRON,
    AsgiHeadersSetter,
    AsgiScopeGetter,
    MappingGetter,
    MappingSetter,
    PairsGetter,
    PairsSetter,
    WsgiEnvironGetter,
)
from flext_ctx_aspects.propagation._policy import (
    DestinationPattern,
    DestinationsHandle,
    allowed_destinations,
    destination_allowed,
    parse_destination_pattern,
    reset_refusal_warnings,
    set_allowed_destinations,
)
from flext_ctx_aspects.propagation.headers import ALL_FORMATS, DEFAULT_FORMATS
from flext_ctx_aspects.typing import Getter, Setter

__all__ = [
    "ALL_FORMATS",
    "ASGI_HEADERS",
    "ASGI_SCOPE",
    "DEFAULT_FORMATS",
    "MAPPING",
    "PAIRS",
    "WSGI_ENVIRON",
    "AsgiHeadersSetter",
    "AsgiScopeGetter",
    "Destination",
    "DestinationPattern",
    "DestinationsHandle",
    "Extracted",
    "Format",
    "Getter",
    "InboundScope",
    "MappingGetter",
    "MappingSetter",
    "PairsGetter",
    "PairsSetter",
    "Setter",
    "WsgiEnvironGetter",
    "allowed_destinations",
    "destination_allowed",
    "extract",
    "inject",
    "parse_destination_pattern",
    "propagation_header_names",
    "reset_refusal_warnings",
    "set_allowed_destinations",
]
