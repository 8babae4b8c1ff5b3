"""The context-state design, measured: scope enter/exit and field reads vs raw ContextVars.

Three candidate representations of the context are compared on the operations the aspects
perform on every call:

* ``snapshot`` — the library's choice: one ContextVar holding an immutable tuple;
* ``per_field`` — one ContextVar per field;
* ``dict_copy`` — one ContextVar holding a dict copied on write.

Plus the library's real public paths (``FlextContext`` scopes and getters) and a raw
``ContextVar`` set/reset/get as the baseline, and the id generators.

Run: ``pytest benchmarks/test_core_state_design.py --benchmark-enable --benchmark-only``.
The figures and the decision are in docs/architecture.md.
"""

from __future__ import annotations

import random
import uuid
from contextvars import ContextVar
from typing import Any

import pytest

from flext_ctx_aspects import FlextContext, _state
from flext_ctx_aspects._ids import generate_id

FIELDS = (
    "correlation_id",
    "parent",
    "service",
    "version",
    "environment",
    "user",
    "operation",
    "request",
    "metadata",
)
LOOPS = 1_000  # operations per benchmark round: keeps timer resolution out of the figures

raw: ContextVar[Any] = ContextVar("raw", default=None)
per_field = [ContextVar[Any](f"field_{name}", default=None) for name in FIELDS]
snapshot: ContextVar[tuple[Any, ...]] = ContextVar("snapshot", default=(None,) * len(FIELDS))
# Never mutated: each scope sets a new dict (copy on write), which is what is measured.
dict_state: ContextVar[dict[str, Any]] = ContextVar("dict_state", default={})  # noqa: B039


def loop(function: Any) -> Any:
    def run() -> None:
        for _ in range(LOOPS):
            function()

    return run


# --- reads ---


@pytest.mark.benchmark(group="state-read")
def test_read_raw_contextvar(benchmark: Any) -> None:
    benchmark(loop(raw.get))


@pytest.mark.benchmark(group="state-read")
def test_read_per_field(benchmark: Any) -> None:
    benchmark(loop(per_field[0].get))


@pytest.mark.benchmark(group="state-read")
def test_read_snapshot(benchmark: Any) -> None:
    get = snapshot.get
    benchmark(loop(lambda: get()[0]))


@pytest.mark.benchmark(group="state-read")
def test_read_dict_copy(benchmark: Any) -> None:
    get = dict_state.get
    benchmark(loop(lambda: get().get("correlation_id")))


@pytest.mark.benchmark(group="state-read")
def test_read_facade_getter(benchmark: Any) -> None:
    benchmark(loop(FlextContext.Correlation.get_correlation_id))


# --- a scope setting two fields (what @with_correlation does) ---


def _two_per_field() -> None:
    first = per_field[0].set("id")
    second = per_field[1].set("parent")
    per_field[1].reset(second)
    per_field[0].reset(first)


def _two_snapshot() -> None:
    current = snapshot.get()
    token = snapshot.set(("id", current[0], *current[2:]))
    snapshot.reset(token)


def _two_dict() -> None:
    current = dict_state.get()
    token = dict_state.set(
        {**current, "correlation_id": "id", "parent": current.get("correlation_id")}
    )
    dict_state.reset(token)


def _raw_scope() -> None:
    raw.reset(raw.set("id"))


@pytest.mark.benchmark(group="state-scope-2-fields")
def test_scope_raw_contextvar(benchmark: Any) -> None:
    benchmark(loop(_raw_scope))


@pytest.mark.benchmark(group="state-scope-2-fields")
def test_scope2_per_field(benchmark: Any) -> None:
    benchmark(loop(_two_per_field))


@pytest.mark.benchmark(group="state-scope-2-fields")
def test_scope2_snapshot(benchmark: Any) -> None:
    benchmark(loop(_two_snapshot))


@pytest.mark.benchmark(group="state-scope-2-fields")
def test_scope2_dict_copy(benchmark: Any) -> None:
    benchmark(loop(_two_dict))


# --- a scope setting nine fields (a fused stack of the four aspects) ---


def _nine_per_field() -> None:
    tokens = [var.set(1) for var in per_field]
    for var, token in zip(reversed(per_field), reversed(tokens), strict=True):
        var.reset(token)


def _nine_snapshot() -> None:
    current = snapshot.get()
    token = snapshot.set((1, current[0], 1, 1, 1, 1, 1, 1, 1))
    snapshot.reset(token)


def _nine_dict() -> None:
    token = dict_state.set({**dict_state.get(), **dict.fromkeys(FIELDS, 1)})
    dict_state.reset(token)


@pytest.mark.benchmark(group="state-scope-9-fields")
def test_scope9_per_field(benchmark: Any) -> None:
    benchmark(loop(_nine_per_field))


@pytest.mark.benchmark(group="state-scope-9-fields")
def test_scope9_snapshot(benchmark: Any) -> None:
    benchmark(loop(_nine_snapshot))


@pytest.mark.benchmark(group="state-scope-9-fields")
def test_scope9_dict_copy(benchmark: Any) -> None:
    benchmark(loop(_nine_dict))


# --- the library's public scopes ---


def _service_context() -> None:
    with FlextContext.Service.service_context("svc", "1.0"):
        pass


def _new_correlation() -> None:
    with FlextContext.Correlation.new_correlation():
        pass


@pytest.mark.benchmark(group="facade-scope")
def test_facade_raw_baseline(benchmark: Any) -> None:
    benchmark(loop(_raw_scope))


@pytest.mark.benchmark(group="facade-scope")
def test_facade_service_context(benchmark: Any) -> None:
    benchmark(loop(_service_context))


@pytest.mark.benchmark(group="facade-scope")
def test_facade_new_correlation(benchmark: Any) -> None:
    benchmark(loop(_new_correlation))


@pytest.mark.benchmark(group="facade-scope")
def test_facade_state_push_pop(benchmark: Any) -> None:
    empty = _state.EMPTY
    benchmark(loop(lambda: _state.pop(_state.push(empty))))


# --- id generation ---

_getrandbits = random.getrandbits
_pool: list[str] = []


def _pooled() -> str:
    # The rejected design: one large random block formatted and cut into 64 ids.
    try:
        return _pool.pop()
    except IndexError:
        block = _getrandbits(8192).to_bytes(1024, "big").hex(" ", 16)
        _pool.extend(block.split())
        return _pool.pop()


@pytest.mark.benchmark(group="ids")
def test_id_format_getrandbits(benchmark: Any) -> None:
    benchmark(loop(lambda: "%032x" % _getrandbits(128)))  # noqa: UP031 - the measured baseline


@pytest.mark.benchmark(group="ids")
def test_id_generate_id(benchmark: Any) -> None:
    benchmark(loop(generate_id))


@pytest.mark.benchmark(group="ids")
def test_id_pooled(benchmark: Any) -> None:
    benchmark(loop(_pooled))


@pytest.mark.benchmark(group="ids")
def test_id_uuid4(benchmark: Any) -> None:
    benchmark(loop(lambda: uuid.uuid4().hex))


# --- the wrapper class ---


def _target(value: int) -> int:
    return value


def _pass_through(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
    return wrapped(*args, **kwargs)


def _closure(function: Any) -> Any:
    def call(*args: Any, **kwargs: Any) -> Any:
        return function(*args, **kwargs)

    return call


def _wrappers() -> dict[str, Any]:
    import wrapt
    from wrapt.__wrapt__ import _FunctionWrapperBase

    from flext_ctx_aspects._engine import _FUNCTION_BINDING

    return {
        "bare": _target,
        "closure": _closure(_target),
        "wrapt_FunctionWrapper": wrapt.FunctionWrapper(_target, _pass_through),
        "c_base_fixed_binding": _FunctionWrapperBase(
            _target, None, _pass_through, None, _FUNCTION_BINDING
        ),
    }


@pytest.mark.benchmark(group="wrapper-choice")
@pytest.mark.parametrize(
    "variant", ["bare", "closure", "wrapt_FunctionWrapper", "c_base_fixed_binding"]
)
def test_wrapper_pass_through(benchmark: Any, variant: str) -> None:
    wrapped = _wrappers()[variant]
    benchmark(loop(lambda: wrapped(1)))


# --- the record type ---


def _record_factories() -> dict[str, Any]:
    import dataclasses

    from flext_ctx_aspects.records import OperationRecord

    # The record's own values and the context snapshot (records.py).
    names = tuple(f"field{i}" for i in range(len(OperationRecord((None,) * 9))))
    frozen = dataclasses.make_dataclass("FrozenRecord", names, frozen=True, slots=True)
    values = tuple(range(len(names)))
    new = tuple.__new__
    return {
        "namedtuple_tuple_new": lambda: new(OperationRecord, values),
        "frozen_slotted_dataclass": lambda: frozen(*values),
    }


@pytest.mark.benchmark(group="record-type")
@pytest.mark.parametrize("variant", ["namedtuple_tuple_new", "frozen_slotted_dataclass"])
def test_record_construction(benchmark: Any, variant: str) -> None:
    benchmark(loop(_record_factories()[variant]))
