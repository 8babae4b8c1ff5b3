"""The ledger: every attribute an instrumentation replaced, so it can be put back exactly.

Each entry is ``(owner, attribute, original, wrapper)``. Undoing restores the original
object (the same object, not an equal one) only where the wrapper is still in place: an
attribute replaced since (``mock.patch``, a reload, user code) is left alone. Afterwards
every wrapper is *released*: its class becomes `_Released`, whose calls go straight to
the original (`_ReleasedCompiled` where the driver is compiled: the driver is released too,
and calls add no Python frame), so references to wrappers that escaped (``handler =
module.func`` taken while instrumented) keep working without recording anything. The bound
wrappers wrapt made while instrumented (a classmethod read with the pure engine, aspects
that read the instance) hold the driver themselves: they are found among the referrers of
their released parents, in one pass over the collector's objects, and released as well.
"""

from __future__ import annotations

import gc
import threading
from typing import Any, Final, NamedTuple

from flext_ctx_aspects._engine import _GET_DESCRIPTOR, _GET_WRAPT, AspectWrapper
from flext_ctx_aspects._engine import _BoundAspectWrapper as BoundAspectWrapper
from flext_ctx_aspects._native import speedups

__all__ = ["Ledger"]

_MISSING: Final = object()
_compiled_driver: Final[Any] = None if speedups is None else speedups.Driver
# The object.__class__ setter itself: wrapt proxies forward ``__class__`` to what they wrap.
_set_class: Final = object.__dict__["__class__"].__set__


class _ReleasedCompiled(AspectWrapper):
    """A wrapper whose instrumentation was undone, whose compiled driver was released.

    Calls go from the wrapper's C call entry (wrapt's C ``__call__`` where there is none) and
    the released driver straight to the original: no Python frame, as while instrumented
    (frame-sensitive functions are wrapped where the driver is compiled). Binds as the
    original does.
    """

    __slots__ = ()  # the same layout as AspectWrapper's, so __class__ can be assigned

    def __get__(self, instance: Any, owner: Any = None) -> Any:
        wrapped = self.__wrapped__
        get = getattr(type(wrapped), "__get__", None)
        return wrapped if get is None else get(wrapped, instance, owner)


class _Released(_ReleasedCompiled):
    """A wrapper whose instrumentation was undone: a pure pass-through to the original."""

    __slots__ = ()

    def __call__(self, /, *args: Any, **kwargs: Any) -> Any:
        return self.__wrapped__(*args, **kwargs)


class _ReleasedBound(BoundAspectWrapper):
    """A bound wrapper of a released wrapper: a pass-through to the bound original."""

    __slots__ = ()

    def __call__(self, /, *args: Any, **kwargs: Any) -> Any:
        return self.__wrapped__(*args, **kwargs)


def _release_bound(parents: list[Any]) -> None:
    """Release the bound wrappers wrapt made of ``parents`` that are still referenced."""
    ids = {id(parent) for parent in parents}
    for referrer in gc.get_referrers(*parents):
        # type(), not isinstance(): a wrapt proxy answers __class__ with its wrapped's class.
        if type(referrer) is BoundAspectWrapper and id(referrer._self_parent) in ids:
            _set_class(referrer, _ReleasedBound)


class _Entry(NamedTuple):
    owner: Any
    attribute: str
    original: Any
    wrapper: Any


# The named tuple's C constructor, without its Python __new__ (one entry per wrapped function).
_new_entry: Final[Any] = tuple.__new__


class Ledger:
    """The replacements of one instrumentation (thread-safe)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._entries: list[_Entry] = []
        self._wrappers: dict[int, Any] = {}  # id(wrapper) -> wrapper
        self._by_original: dict[int, Any] = {}  # id(original) -> wrapper

    def __len__(self) -> int:
        return len(self._entries)

    def owns(self, obj: Any) -> bool:
        """Whether ``obj`` is a wrapper this ledger put in place."""
        return id(obj) in self._wrappers and self._wrappers[id(obj)] is obj

    def wrapper_for(self, original: Any) -> Any | None:
        """The wrapper already made for ``original`` (None if there is none)."""
        # Originals stay alive in the entries, so their ids are not reused.
        return self._by_original.get(id(original))

    def replace(self, owner: Any, attribute: str, original: Any, wrapper: Any) -> None:
        """Put ``wrapper`` in place of ``original`` as ``owner.attribute``, and record it."""
        with self._lock:
            setattr(owner, attribute, wrapper)
            self._entries.append(_new_entry(_Entry, (owner, attribute, original, wrapper)))
            self._wrappers[id(wrapper)] = wrapper
            self._by_original[id(original)] = wrapper

    def originals(self) -> dict[int, tuple[Any, Any]]:
        """``id(original) -> (original, wrapper)`` of every replacement made."""
        with self._lock:
            return {id(entry.original): (entry.original, entry.wrapper) for entry in self._entries}

    def restore(self) -> tuple[int, int]:
        """Put every original back where its wrapper still is; release every wrapper.

        Returns:
            ``(restored, left)``: attributes restored, and attributes left alone because
            something else replaced the wrapper since.
        """
        with self._lock:
            entries, self._entries = self._entries, []
            wrappers, self._wrappers = self._wrappers, {}
            self._by_original = {}
        restored = left = 0
        for entry in reversed(entries):
            current = vars(entry.owner).get(entry.attribute, _MISSING)
            if current is entry.wrapper:
                setattr(entry.owner, entry.attribute, entry.original)
                restored += 1
            else:
                left += 1
        binding_by_wrapt = []
        for wrapper in wrappers.values():
            if isinstance(wrapper, _ReleasedCompiled) or not isinstance(wrapper, AspectWrapper):
                continue
            driver = wrapper._self_wrapper
            if _compiled_driver is not None and type(driver) is _compiled_driver:
                driver.release()
                _set_class(wrapper, _ReleasedCompiled)
            else:
                _set_class(wrapper, _Released)
                if wrapper._self_get in (_GET_WRAPT, _GET_DESCRIPTOR):
                    binding_by_wrapt.append(wrapper)
        if binding_by_wrapt:
            _release_bound(binding_by_wrapt)
        return restored, left
