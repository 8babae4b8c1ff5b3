"""Auto-instrumentation: apply aspects to whole modules and packages from configuration.

``instrument(config)`` wraps the configured modules' functions and methods, those already
imported and those imported later (one import hook), and returns a handle that undoes it;
``uninstrument()`` undoes every active instrumentation; ``@no_instrument`` opts a function or
class out. See docs/instrumentation.md.
"""

from __future__ import annotations

from flext_ctx_aspects.instrument._api import (
    Instrumentation,
    instrument,
    no_instrument,
    uninstrument,
)

__all__ = ["Instrumentation", "instrument", "no_instrument", "uninstrument"]
