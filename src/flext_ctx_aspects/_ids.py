"""Identifier generation.

Correlation ids are 32 lowercase hex characters (128 random bits), so that a root correlation
id can serve as a W3C trace id unchanged. ``getrandbits(128).to_bytes(16, "big").hex()`` is
the fastest way measured here: about half the cost of ``"%032x" % getrandbits(128)`` and an
eighth of ``uuid.uuid4().hex``; a pool refilled from one large random block was no faster
(the block's formatting dominates) and needs fork handling, so it was dropped
(``benchmarks/test_core_state_design.py``).

The bits come from the library's own `random.Random` instance (`rng`), never
from the ``random`` module's shared one: instrumented code that seeds ``random`` and replays
a sequence (``random.seed(0); random.sample(...)``, as more-itertools' tests do) must see the
same numbers with and without our aspects drawing ids in between. It is reseeded in forked
children, as the ``random`` module does for its own instance.
"""

from __future__ import annotations

import os
import random
from collections.abc import Callable

from flext_ctx_aspects._diagnostics import report_internal_error
from flext_ctx_aspects._validate import validate_id
from flext_ctx_aspects.errors import InvalidValueError

__all__ = [
    "IdGenerator",
    "active_generator",
    "generate_id",
    "generate_span_id",
    "id_from",
    "new_id",
    "set_generator",
    "uuid4_hex",
]

IdGenerator = Callable[[], str]
"""A zero-argument callable returning a new identifier string."""

rng = random.Random()
"""The library's private source of random bits (ids, sampling): never the shared ``random``."""
if hasattr(os, "register_at_fork"):  # a forked child must not repeat its parent's ids
    os.register_at_fork(after_in_child=rng.seed)
_getrandbits = rng.getrandbits
randbits = _getrandbits  # for compiled call paths that inline generate_id()


def generate_id() -> str:
    """Return a new random id: 32 lowercase hex characters (128 bits), never all zeros.

    Never all zeros, so it is always a valid W3C trace id.
    """
    # `or 1`: an all-zero draw (probability 2**-128) would be an invalid trace id.
    return (_getrandbits(128) or 1).to_bytes(16, "big").hex()  # inlined in _compile too


def id_from(source: random.Random) -> str:
    """`generate_id`'s formula on another `random.Random` (to check the compiled draw)."""
    return (source.getrandbits(128) or 1).to_bytes(16, "big").hex()


def generate_span_id() -> str:
    """Return a new random 16 lowercase hex character id (64 bits), never all zeros."""
    return (_getrandbits(64) or 1).to_bytes(8, "big").hex()


def uuid4_hex() -> str:
    """Return ``uuid.uuid4().hex``: 32 hex characters from the OS random source.

    About eight times slower than `generate_id`; for deployments that want ids drawn
    from ``os.urandom``.
    """
    import uuid

    return uuid.uuid4().hex


# The configured generator, in a one-element list so compiled call paths read it with one
# index operation and still see a later reconfiguration.
active_generator: list[IdGenerator] = [generate_id]


def set_generator(generator: IdGenerator) -> None:
    """Make ``generator`` the source of every new correlation and request id.

    A generator other than the default one is checked on every id it makes, by the rule of
    every field value: a non-str is converted with ``str()``; None, or an id that is not
    valid (control characters, too long), is replaced by a generated one and reported once
    through logging, so a bad generator never puts an invalid value in the context, a header
    or a record.
    """
    active_generator[0] = generator if generator is generate_id else _checked(generator)


def _checked(generator: IdGenerator) -> IdGenerator:
    def checked_id() -> str:
        value: object = generator()
        # The rule of every field value: converted with str(), None means "none", then
        # validated; what fails is replaced and reported.
        if value is not None:
            try:
                return validate_id("id_generator", value if type(value) is str else str(value))
            except InvalidValueError as error:
                problem: Exception = error
        else:
            problem = TypeError("the id generator returned None")
        report_internal_error(f"id generator {getattr(generator, '__qualname__', '?')}", problem)
        return generate_id()

    return checked_id


def new_id() -> str:
    """Return a new id from the configured generator."""
    return active_generator[0]()
