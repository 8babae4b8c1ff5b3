"""``FlextResult``: a success value or an error message, without exceptions."""

from __future__ import annotations

from collections.abc import Callable
from typing import Generic, TypeVar, cast, final

from flext_ctx_aspects.errors import ResultError

__all__ = ["FlextResult"]

T = TypeVar("T")
U = TypeVar("U")

_NO_VALUE: object = object()


@final
class FlextResult(Generic[T]):
    """The outcome of an operation: ``ok(value)`` or ``fail(error)``.

    ``FlextResult[dict].ok(x)`` and ``FlextResult.ok(x)`` both work; the subscripted form only
    informs type checkers.

    Example:
        >>> result = FlextResult[int].ok(3)
        >>> result.success, result.value
        (True, 3)
        >>> FlextResult[int].fail("no luck").error
        'no luck'
    """

    __slots__ = ("_error", "_value")

    def __init__(self, value: object, error: str | None) -> None:
        """Build a result; prefer `ok` and `fail`."""
        self._value = value
        self._error = error

    @classmethod
    def ok(cls, value: T) -> FlextResult[T]:
        """Return a successful result holding ``value``."""
        return cls(value, None)

    @classmethod
    def fail(cls, error: str) -> FlextResult[T]:
        """Return a failed result carrying the message ``error``.

        Raises:
            TypeError: ``error`` is not a string.
        """
        if not isinstance(error, str):
            raise TypeError(f"FlextResult.fail() takes a str error message, got {type(error)!r}")
        return cls(_NO_VALUE, error)

    @property
    def success(self) -> bool:
        """Whether this result is a success."""
        return self._error is None

    @property
    def is_success(self) -> bool:
        """Alias of `success`."""
        return self._error is None

    @property
    def is_failure(self) -> bool:
        """Whether this result is a failure."""
        return self._error is not None

    @property
    def value(self) -> T:
        """The success value.

        Raises:
            ResultError: The result is a failure; the message includes its error.
        """
        if self._error is not None:
            raise ResultError(self._error)
        return cast("T", self._value)

    @property
    def error(self) -> str | None:
        """The error message of a failure, ``None`` for a success."""
        return self._error

    def value_or(self, default: T) -> T:
        """Return the success value, or ``default`` for a failure."""
        return default if self._error is not None else cast("T", self._value)

    def map(self, func: Callable[[T], U]) -> FlextResult[U]:
        """Apply ``func`` to a success value; a failure passes through unchanged."""
        if self._error is not None:
            return FlextResult(_NO_VALUE, self._error)
        return FlextResult(func(cast("T", self._value)), None)

    def __bool__(self) -> bool:
        return self._error is None

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, FlextResult):
            return NotImplemented
        return bool(self._value == other._value and self._error == other._error)

    def __hash__(self) -> int:
        return hash((FlextResult, self._error))

    def __repr__(self) -> str:
        if self._error is not None:
            return f"FlextResult.fail({self._error!r})"
        return f"FlextResult.ok({self._value!r})"
