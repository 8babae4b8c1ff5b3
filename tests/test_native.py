"""The implementation switch and the compiled parts: the same outcome as pure Python.

The oracle of the compiled ``Digest.add`` is the pure-Python one (``_python_add`` on the
pure-Python state class), fed the same sequences; every attribute is compared after every
step. The whole suite also runs with ``FLEXT_CTX_PURE_PYTHON=1`` in CI (.ci/run).
"""

from __future__ import annotations

import functools
import importlib.util
import inspect
import os
import random
import subprocess
import sys
import textwrap
import types
from array import array
from pathlib import Path
from typing import Any

import pytest

import flext_ctx_aspects
from flext_ctx_aspects import _native
from flext_ctx_aspects._engine import _FunctionWrapperBase
from flext_ctx_aspects.records import FIELD_NAMES
from flext_ctx_aspects.sinks import _sketch
from flext_ctx_aspects.sinks.stats import StatsSink

ROOT = Path(__file__).resolve().parents[1]
compiled_only = pytest.mark.skipif(
    _native.speedups is None, reason="the compiled module is not built or is switched off"
)
STATE = ("count", "errors", "zero_count", "offset", "total_ns", "min_ns", "max_ns")


_PRINT_IMPLEMENTATION = "import flext_ctx_aspects as f; print(f.implementation)"


def _default() -> str:
    # What a fresh interpreter without the variable runs (this one may run with it set).
    return _run(_PRINT_IMPLEMENTATION).stdout.strip()


def _run(code: str, **env: str) -> subprocess.CompletedProcess[str]:
    environment = {k: v for k, v in os.environ.items() if k != _native.ENVIRONMENT_VARIABLE}
    environment.update(env)
    return subprocess.run(
        [sys.executable, "-W", "always", "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        check=True,
        env=environment,
        timeout=60,
    )


def test_implementation_is_pinned_and_consistent() -> None:
    assert flext_ctx_aspects.implementation in ("compiled", "python")
    assert "implementation" in flext_ctx_aspects.__all__
    assert (flext_ctx_aspects.implementation == "compiled") == _sketch.COMPILED


@pytest.mark.parametrize("value", ["1", "true", "YES", " on "])
def test_the_environment_variable_forces_pure_python(value: str) -> None:
    run = _run(
        "import flext_ctx_aspects as f, flext_ctx_aspects.sinks._sketch as s;"
        "print(f.implementation, s.COMPILED)",
        FLEXT_CTX_PURE_PYTHON=value,
    )
    assert run.stdout.split() == ["python", "False"]


@pytest.mark.parametrize("value", ["0", "false", "", "off"])
def test_false_values_leave_the_default(value: str) -> None:
    run = _run(_PRINT_IMPLEMENTATION, FLEXT_CTX_PURE_PYTHON=value)
    assert run.stdout.strip() == _default()
    assert "Warning" not in run.stderr


def test_a_value_that_is_no_boolean_is_dropped_with_a_warning() -> None:
    run = _run(_PRINT_IMPLEMENTATION, FLEXT_CTX_PURE_PYTHON="maybe")
    assert run.stdout.strip() == _default()
    assert "FLEXT_CTX_PURE_PYTHON='maybe' is not a boolean" in run.stderr


# --- the compiled Digest.add against the pure-Python one ----------------------------------------


class PureDigest(_sketch._PythonDigestCore):
    """The pure-Python digest, whatever implementation is active (the oracle)."""

    __slots__ = ()
    _add_generic = _sketch._python_add
    add_key = _sketch.Digest.add_key
    __init__ = _sketch.Digest.__init__


def _state(digest: Any) -> tuple[Any, ...]:
    return (*(getattr(digest, name) for name in STATE), digest.bins.tolist())


def _durations(seed: int) -> list[Any]:
    rng = random.Random(seed)
    values: list[Any] = [0, -5, 1, 2, 3, 2**62, 2**63 - 1, 2**63, 2**70, 10**30, 7.5, True]
    for _ in range(3000):
        scale = rng.choice((10**3, 10**6, 10**9, 10**12))
        values.append(rng.randint(1, scale))
    rng.shuffle(values)
    return values


@compiled_only
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_compiled_add_matches_pure_python_step_by_step(seed: int) -> None:
    compiled, pure = _sketch.Digest(), PureDigest()
    assert type(compiled).add is not PureDigest.add
    rng = random.Random(seed)
    for duration in _durations(seed):
        failed = rng.choice((False, True, 0, 1, "", "x"))
        compiled.add(duration, failed)
        pure.add(duration, failed)
        assert _state(compiled) == _state(pure), duration


@compiled_only
def test_compiled_bin_key_is_the_mapping_bit_for_bit() -> None:
    speedups: Any = _native.speedups
    rng = random.Random(7)
    samples = [1, 2, 3, 1000, 2**53, 2**53 + 1, 2**62, 2**63 - 1]
    samples += [rng.randint(1, 2 ** rng.randint(1, 62)) for _ in range(20000)]
    for duration in samples:
        assert speedups.bin_key(duration) == _sketch.bin_key(duration), duration
    with pytest.raises(ValueError, match="positive"):
        speedups.bin_key(0)


@compiled_only
def test_compiled_add_takes_the_python_path_for_what_it_does_not_cover() -> None:
    digest = _sketch.Digest()
    digest.add(1000, False)
    digest.bins = array("d", [0.0] * len(digest.bins))  # not the array('Q') of the fast path
    before = digest.bins[0]
    digest.add(1000, False)
    assert digest.count == 2
    assert digest.bins[0] == before + 1
    with pytest.raises(TypeError, match="2 arguments"):
        digest.add(1)  # type: ignore[call-arg]


@compiled_only
def test_a_failing_comparison_leaves_the_digest_unchanged() -> None:
    digest = _sketch.Digest()
    digest.add(10, False)
    digest.min_ns = "not a number"  # type: ignore[assignment]
    snapshot = (digest.count, digest.total_ns, digest.bins.tolist())
    with pytest.raises(TypeError):
        digest.add(20, False)
    assert (digest.count, digest.total_ns, digest.bins.tolist()) == snapshot


def test_statistics_are_the_same_in_both_implementations() -> None:
    code = """
        import json, random
        from flext_ctx_aspects.sinks import StatsSink
        sink = StatsSink()
        rng = random.Random(5)
        for i in range(5000):
            sink.observe(f"op{i % 7}", rng.randint(0, 10**rng.randint(1, 10)), i % 13 == 0)
        print(json.dumps(sink.to_json(), sort_keys=True))
    """
    compiled = _run(code).stdout
    pure = _run(code, FLEXT_CTX_PURE_PYTHON="1").stdout
    assert compiled == pure
    assert '"count": ' in compiled


def test_both_observe_paths_feed_the_same_digest() -> None:
    # emit (records) and observe (the light path) are written per implementation: one check.
    sink = StatsSink()
    sink.observe("a", 1500, False)
    sink.observe("a", 0, True)
    stats = sink.get("a")
    assert stats is not None
    assert (stats.count, stats.errors, stats.min_ns, stats.max_ns) == (2, 1, 0, 1500)


# --- the build hook ------------------------------------------------------------------------------


def _hook() -> Any:
    spec = importlib.util.spec_from_file_location("hatch_build_under_test", ROOT / "hatch_build.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_without_a_compiler_the_build_says_so_and_goes_on(monkeypatch: pytest.MonkeyPatch) -> None:
    hook = _hook()
    monkeypatch.setenv("CC", "/nonexistent/cc")
    monkeypatch.delenv("FLEXT_CTX_PURE_PYTHON", raising=False)
    messages: list[str] = []
    assert hook.build_speedups(messages.append) is None
    assert len(messages) == 1
    assert "no C compiler" in messages[0]
    assert "pure-Python implementation" in messages[0]


def test_a_failing_compile_says_so_and_goes_on(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    hook = _hook()
    failing = tmp_path / "cc"
    failing.write_text("#!/bin/sh\necho 'cc: internal error' >&2\nexit 1\n", encoding="utf-8")
    failing.chmod(0o755)
    monkeypatch.setenv("CC", str(failing))
    monkeypatch.delenv("FLEXT_CTX_PURE_PYTHON", raising=False)
    monkeypatch.setattr(hook, "extension_path", lambda: tmp_path / "_speedups.so")
    messages: list[str] = []
    assert hook.build_speedups(messages.append) is None
    assert "compiling the C module failed" in messages[0]
    assert "cc: internal error" in messages[0]


def test_the_build_can_be_switched_off(monkeypatch: pytest.MonkeyPatch) -> None:
    hook = _hook()
    monkeypatch.setenv("FLEXT_CTX_PURE_PYTHON", "1")
    messages: list[str] = []
    assert hook.build_speedups(messages.append) is None
    assert "FLEXT_CTX_PURE_PYTHON is set" in messages[0]


def test_the_compile_command_is_this_pythons(tmp_path: Path) -> None:
    hook = _hook()
    command = hook.compile_command(tmp_path / "out.so")
    assert any(part.startswith("-I") and "include" in part for part in command)
    assert command[-2:] == ["-o", str(tmp_path / "out.so")]
    assert str(hook.SOURCE) in command


@pytest.mark.parametrize("key", ["count", "errors"])
def test_saved_counters_beyond_a_long_long_are_refused_clearly(key: str) -> None:
    from flext_ctx_aspects.errors import ConfigError

    entry = _sketch.Digest().to_json()
    entry[key] = 2**64
    with pytest.raises(ConfigError, match=r"up to 2\*\*63 - 1"):
        _sketch.Digest.from_json(entry, "stats.json, operations[0]")


# --- the compiled drivers ------------------------------------------------------------------------


def _caller_name() -> str:
    return sys._getframe(1).f_code.co_name


@compiled_only
@pytest.mark.parametrize("stack", ["timed", "service", "fused"])
def test_a_compiled_driver_adds_no_python_frame(stack: str) -> None:
    from flext_ctx_aspects import service, timed, with_correlation

    decorate = {
        "timed": timed,
        "service": service("svc"),
        "fused": lambda f: with_correlation(service("svc")(timed(f))),
    }[stack]
    probe = decorate(_caller_name)
    assert type(probe._self_wrapper).__name__ == "Driver"
    from flext_ctx_aspects._engine import _FunctionWrapperBase

    if inspect.isfunction(_FunctionWrapperBase.__call__):
        pytest.skip("wrapt's pure-Python __call__ (WRAPT_DISABLE_EXTENSIONS) adds its own frame")

    def the_caller() -> str:
        return probe()

    assert the_caller() == "the_caller"


def test_sinks_run_while_the_bodys_exception_is_being_handled() -> None:
    # The Python driver records inside its `except BaseException` block; so does the C one.
    from flext_ctx_aspects import timed
    from flext_ctx_aspects.sinks import add_sink

    seen: list[BaseException | None] = []

    class ExcInfoSink:
        def emit(self, record: object) -> None:
            seen.append(sys.exc_info()[1])

    @timed(name="fails")
    def fails() -> None:
        raise KeyError("body")

    with add_sink(ExcInfoSink()), pytest.raises(KeyError) as raised:
        fails()
    assert seen == [raised.value]
    assert sys.exc_info() == (None, None, None)


def test_a_base_exception_from_a_sink_replaces_the_bodys_chained_to_it() -> None:
    from flext_ctx_aspects import timed
    from flext_ctx_aspects.sinks import add_sink

    class Interrupting:
        def emit(self, record: object) -> None:
            raise KeyboardInterrupt

    @timed(name="fails")
    def fails() -> None:
        raise KeyError("body")

    with add_sink(Interrupting()), pytest.raises(KeyboardInterrupt) as raised:
        fails()
    assert isinstance(raised.value.__context__, KeyError)
    from flext_ctx_aspects._state import get_operation

    assert get_operation() is None  # the operation scope was closed regardless


@compiled_only
def test_a_driver_needs_something_to_do() -> None:
    speedups: Any = _native.speedups
    with pytest.raises(ValueError, match="update, a timing spec or both"):
        speedups.Driver(None, "f", None, None)
    with pytest.raises(TypeError, match="positionally"):
        speedups.Driver(None, "f", None, None, name=None)
    driver = speedups.Driver(lambda s, i, a, k: s, "f", None, None)
    with pytest.raises(TypeError, match="positionally"):
        driver(len, None, ())
    assert driver(len, None, ([1, 2],), {}) == 2


@compiled_only
@pytest.mark.parametrize("stack", ["timed", "service", "fused"])
def test_compiled_and_python_drivers_record_the_same(stack: str) -> None:
    from flext_ctx_aspects import _engine, request_scope, service, timed, with_correlation
    from flext_ctx_aspects.testing import capture_operations

    decorate = {
        "timed": timed(name="op"),
        "service": service("svc"),
        "fused": lambda f: with_correlation(
            service("svc")(timed(name="op")(request_scope(user_id="u")(f)))
        ),
    }[stack]

    def body(x: int, *, fail: bool = False) -> dict[str, Any]:
        from flext_ctx_aspects import FlextContext

        FlextContext.Performance.add_operation_metadata("x", x)
        if fail:
            raise LookupError(x)
        full = FlextContext.Serialization.get_full_context()
        return {k: v for k, v in full.items() if not k.endswith(("_id", "traceparent"))}

    compiled = decorate(body)
    previous = _engine.use_compiled_drivers(enabled=False)
    try:
        python = decorate(body)
    finally:
        _engine.use_compiled_drivers(enabled=previous)
    assert type(compiled._self_wrapper).__name__ == "Driver"
    assert type(python._self_wrapper).__name__ == "function"

    def outcome(function: Any) -> tuple[Any, ...]:
        with capture_operations() as ops:
            value = function(3)
            with pytest.raises(LookupError) as raised:
                function(4, fail=True)
        import time

        now = time.time_ns()
        for o in ops:  # the wall-clock start, from the same offset either way
            assert abs(o.start_time_ns - now) < 10**9
            assert o.duration_ns >= 0
        varying = {"start_time_ns", "duration_ns", "correlation_id", "trace_id", "span_id"}
        varying |= {"parent_correlation_id", "request_id", "context"}
        shapes = [
            {f: getattr(o, f) for f in FIELD_NAMES if f not in varying and hasattr(o, f)}
            for o in ops
        ]
        return value, raised.value.args, shapes

    assert outcome(compiled) == outcome(python)


def test_a_compiled_module_built_from_another_source_is_refused(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import types

    stale = types.ModuleType("flext_ctx_aspects._speedups")
    stale.ABI = _native.ABI - 1  # type: ignore[attr-defined]
    monkeypatch.delenv(_native.ENVIRONMENT_VARIABLE, raising=False)
    monkeypatch.setattr(_native, "import_module", lambda name: stale)
    with pytest.warns(RuntimeWarning, match="out of date"):
        assert _native._load() is None

    def broken(name: str) -> types.ModuleType:
        raise ImportError("undefined symbol: PyFoo")

    monkeypatch.setattr(_native, "import_module", broken)
    with pytest.warns(RuntimeWarning, match="does not load"):
        assert _native._load() is None


@compiled_only
@pytest.mark.parametrize("keep_errors", [True, False])
@pytest.mark.parametrize("listening", ["records", "stats"])
def test_compiled_and_python_drivers_filter_alike(keep_errors: bool, listening: str) -> None:
    from flext_ctx_aspects import _engine, timed
    from flext_ctx_aspects.sinks import StatsSink, add_sink
    from flext_ctx_aspects.testing import capture_operations

    def body(fail: bool = False) -> int:
        if fail:
            raise LookupError
        return 1

    decorate = timed(name="op", min_duration_ms=50, keep_errors=keep_errors)
    compiled = decorate(body)
    previous = _engine.use_compiled_drivers(enabled=False)
    try:
        python = decorate(body)
    finally:
        _engine.use_compiled_drivers(enabled=previous)

    def recorded(function: Any) -> tuple[int, int]:
        def calls() -> None:
            assert function() == 1  # fast: below min_duration
            with pytest.raises(LookupError):
                function(fail=True)  # fast, failed: kept only with keep_errors

        if listening == "records":
            with capture_operations() as ops:
                calls()
            return len(ops), sum(o.status == "error" for o in ops)
        stats = StatsSink()
        with add_sink(stats):
            calls()
        summary = stats.get("op")
        return (0, 0) if summary is None else (summary.count, summary.errors)

    expected = (1, 1) if keep_errors else (0, 0)
    assert recorded(compiled) == recorded(python) == expected


@compiled_only
def test_records_that_cannot_be_in_a_cycle_are_left_out_of_the_collector() -> None:
    # CPython's rule for tuples: only untracked contents -> untracked. A record holding the
    # shared empty mapping and a snapshot of text fields qualifies; one whose metadata can
    # reach it back must stay tracked, or the cycle below would never be freed.
    import gc
    import weakref

    from flext_ctx_aspects import FlextContext, timed
    from flext_ctx_aspects.sinks import add_sink

    records: list[Any] = []

    class Keeping:
        emit = records.append

    class Marker:
        pass

    @timed(name="plain")
    def plain() -> None:
        return None

    @timed(name="with_metadata")
    def with_metadata(box: list[Any]) -> None:
        FlextContext.Performance.add_operation_metadata("box", box)

    gc.collect()  # the empty snapshot was made at import: the collector untracks it once
    marker = Marker()
    box: list[Any] = [marker]
    with add_sink(Keeping()):
        plain()
        with_metadata(box)
    assert [r.name for r in records] == ["plain", "with_metadata"]
    assert not gc.is_tracked(records[0])
    assert gc.is_tracked(records[1])
    box.append(records[1])  # record -> metadata -> box -> record
    alive = weakref.ref(marker)
    del marker, box, records[:]
    gc.collect()
    assert alive() is None


# --- deferred drivers: the plan built at the first call ---------------------------------------


def _deferred(function: Any) -> Any:
    return function._self_wrapper


@compiled_only
def test_a_deferred_driver_builds_at_the_first_call_what_decoration_would_have() -> None:
    from flext_ctx_aspects import _engine, service, timed, with_correlation
    from flext_ctx_aspects.testing import capture_operations

    def body(x: int) -> int:
        return x * 2

    stack = (with_correlation(), service("svc"), timed(min_duration_ms=0))

    def decorate(function: Any) -> Any:
        for decorator in reversed(stack):
            function = decorator(function)
        return function

    deferred = decorate(body)
    assert _deferred(deferred).pending
    previous = _engine.use_compiled_drivers(enabled=False)
    try:
        eager = decorate(body)
    finally:
        _engine.use_compiled_drivers(enabled=previous)
    with capture_operations() as ops:
        assert deferred(2) == eager(2) == 4
    assert not _deferred(deferred).pending
    assert _deferred(deferred).delegate is None  # settled into a compiled driver itself
    first, second = ops
    assert first.name == second.name == f"{__name__}.{body.__qualname__}"
    assert (first.service_name, first.kind, first.status) == (second.service_name, "function", "ok")


@compiled_only
def test_a_deferred_driver_names_the_function_as_decorated() -> None:
    from flext_ctx_aspects import timed
    from flext_ctx_aspects.testing import capture_operations

    def body() -> None:
        return None

    wrapped = timed(body)
    body.__qualname__ = "renamed_later"  # after decoration: not what an eager plan saw
    with capture_operations() as ops:
        wrapped()
    assert ops[0].name.endswith(
        ".test_a_deferred_driver_names_the_function_as_decorated.<locals>.body"
    )


@compiled_only
def test_a_failing_first_call_build_is_reported_and_the_call_goes_on(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from flext_ctx_aspects import _engine, timed

    @timed
    def body(x: int) -> int:
        return x + 1

    def broken(*args: Any) -> Any:
        raise RuntimeError("plan")

    monkeypatch.setattr(_engine, "_make_plan", broken)
    with caplog.at_level("ERROR", logger="flext_ctx_aspects"):
        assert body(1) == 2
        assert body(2) == 3
    assert any("at its first call" in r.getMessage() for r in caplog.records)
    assert _deferred(body).delegate is _engine._pass_through


@compiled_only
def test_a_base_exception_while_building_leaves_the_driver_pending(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from flext_ctx_aspects import _engine, timed

    @timed
    def body() -> int:
        return 7

    real = _engine._make_plan

    def interrupted(*args: Any) -> Any:
        raise KeyboardInterrupt

    monkeypatch.setattr(_engine, "_make_plan", interrupted)
    with pytest.raises(KeyboardInterrupt):
        body()
    assert _deferred(body).pending
    monkeypatch.setattr(_engine, "_make_plan", real)
    assert body() == 7
    assert not _deferred(body).pending


@compiled_only
def test_first_calls_from_many_threads_at_once_all_count() -> None:
    import threading

    from flext_ctx_aspects import timed
    from flext_ctx_aspects.testing import capture_operations

    functions = []
    for index in range(50):

        def body(value: int, index: int = index) -> int:
            return value + index

        functions.append(timed(name=f"op{index}")(body))
    start = threading.Barrier(8)
    results: list[int] = []

    def worker() -> None:
        start.wait()
        results.extend(function(1) for function in functions)

    with capture_operations() as ops:
        threads = [threading.Thread(target=worker) for _ in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    assert sorted(results) == sorted([1 + i for i in range(50)] * 8)
    assert sorted(o.name for o in ops) == sorted([f"op{i}" for i in range(50)] * 8)
    assert not any(_deferred(function).pending for function in functions)


@compiled_only
def test_deferred_generators_and_coroutines_delegate_to_their_python_drivers() -> None:
    import asyncio
    import inspect as inspect_module

    from flext_ctx_aspects import timed
    from flext_ctx_aspects.testing import capture_operations

    @timed
    def numbers() -> Any:
        yield 1
        yield 2

    @timed
    async def answer() -> int:
        return 42

    assert _deferred(numbers).pending
    assert _deferred(answer).pending
    with capture_operations() as ops:
        generator = numbers()
        assert inspect_module.isgenerator(generator)
        assert list(generator) == [1, 2]
        assert asyncio.run(answer()) == 42
    assert [o.kind for o in ops] == ["generator", "coroutine"]
    assert callable(_deferred(numbers).delegate)
    assert callable(_deferred(answer).delegate)


@compiled_only
def test_a_deferred_driver_does_not_keep_a_dropped_module_alive() -> None:
    # The driver holds the function until its first call, and a module's globals hold the
    # wrapper: a cycle the collector must see through.
    import gc
    import weakref

    from flext_ctx_aspects import timed

    namespace: dict[str, Any] = {"__name__": "dropped_module"}
    exec("def work():\n    return 1\n", namespace)  # noqa: S102 - a module of its own
    alive = weakref.ref(namespace["work"])
    namespace["work"] = timed(namespace["work"])
    assert _deferred(namespace["work"]).pending
    del namespace
    gc.collect()
    assert alive() is None


# --- the wrapper's own call entry (_speedups.wrapper_base) -------------------------------------

vectorcall_only = pytest.mark.skipif(
    _native.speedups is None or inspect.isfunction(_FunctionWrapperBase.__call__),
    reason="needs the compiled module and wrapt's C extension",
)


@vectorcall_only
def test_the_wrapper_has_its_own_call_entry_where_both_are_compiled() -> None:
    from flext_ctx_aspects import _engine

    assert _engine.VECTORCALL_WRAPPER
    assert _engine.AspectWrapper.__mro__[1].__name__ == "AspectWrapperBase"
    assert _engine.AspectWrapper.__mro__[2] is _FunctionWrapperBase


@vectorcall_only
def test_a_wrapt_of_another_layout_is_refused() -> None:
    class Other:
        pass

    modes = ("function", "static", "wrapt", "descriptor", "partial", "classmethod")
    with pytest.raises(TypeError, match="layout"):
        _native.speedups.wrapper_base(Other, "flext_ctx_aspects.function", len, modes)
    with pytest.raises(TypeError, match="expected 6 binding modes, got 2"):
        _native.speedups.wrapper_base(
            _FunctionWrapperBase, "flext_ctx_aspects.function", len, modes[:2]
        )


@vectorcall_only
def test_the_compiled_base_binds_functions_and_staticmethods_in_c() -> None:
    # The matrix compares binding with undecorated code; this pins where it happens: the C
    # __get__ of the base, with no Python __get__ of AspectWrapper in between.
    from flext_ctx_aspects import _engine, timed

    assert "__get__" not in vars(_engine.AspectWrapper)
    assert type(_engine.AspectWrapper.__get__).__name__ == "wrapper_descriptor"

    class Owner:
        @timed
        def method(self: Any, x: int) -> tuple[Any, int]:
            return self, x

        @timed
        @staticmethod
        def static(x: int) -> int:
            return x

    owner = Owner()
    method = vars(Owner)["method"]
    bound = owner.method
    assert type(bound) is types.MethodType
    assert bound.__self__ is owner
    assert bound.__func__ is method
    assert bound(3) == (owner, 3)
    assert Owner.method is method
    assert method.__get__(None, Owner) is method
    assert Owner.static is vars(Owner)["static"] is owner.static
    assert owner.static(4) == 4
    assert method._self_get == "function"
    assert vars(Owner)["static"]._self_get == "static"


@vectorcall_only
def test_a_classmethod_binds_as_a_method_of_its_functions_wrapper() -> None:
    # The decorator above @classmethod (as the instrumenter applies it): reading it makes what
    # classmethod.__get__ makes, a method of the class, of a function wrapper sharing the
    # driver; one record per call, under the classmethod's name.
    from flext_ctx_aspects import _engine, timed
    from flext_ctx_aspects.testing import capture_operations

    class Base:
        @timed
        @classmethod
        def make(cls: Any, x: int) -> tuple[Any, int]:
            return cls, x

    class Sub(Base):
        pass

    wrapper = vars(Base)["make"]
    assert wrapper._self_get == "classmethod"
    for reader, owner in ((Base, Base), (Sub, Sub), (Sub(), Sub), (Base(), Base)):
        bound = reader.make
        assert type(bound) is types.MethodType
        assert bound.__self__ is owner
        assert bound.__func__ is wrapper._self_bound_function
        assert bound.__func__.__wrapped__ is wrapper.__wrapped__.__func__
        assert bound.__func__._self_wrapper is wrapper._self_wrapper  # the same driver
    with capture_operations() as ops:
        assert Sub.make(2) == (Sub, 2)
        assert Base().make(3) == (Base, 3)
    assert [op.name for op in ops] == [f"{__name__}.{Base.make.__qualname__}"] * 2
    assert wrapper.__get__(None, Sub).__self__ is Sub

    # A generator's driver is compiled too until its first call (then it hands calls to the
    # Python one): bound the same way. Python drivers switched on leave binding to wrapt.
    previous = _engine.use_compiled_drivers(enabled=False)
    try:

        class Python:
            @timed
            @classmethod
            def make(cls: Any) -> Any:
                return cls

    finally:
        _engine.use_compiled_drivers(enabled=previous)

    class Generating:
        @timed
        @classmethod
        def items(cls: Any) -> Any:
            yield cls

    assert vars(Python)["make"]._self_get == "wrapt"
    assert vars(Generating)["items"]._self_get == "classmethod"
    with capture_operations() as ops:
        assert Python.make() is Python
        assert list(Generating.items()) == [Generating]
        assert list(Generating().items()) == [Generating]
    assert len(ops) == 3


@vectorcall_only
def test_the_binding_mode_field_takes_known_modes_only() -> None:
    from flext_ctx_aspects import _engine, timed

    def function() -> int:
        return 1

    wrapper: Any = timed(function)
    assert wrapper._self_get is _engine._GET_FUNCTION
    wrapper._self_get = _engine._GET_STATIC
    assert wrapper.__get__(object(), object) is wrapper
    with pytest.raises(ValueError, match=r"_self_get: expected one of .*, got 'bound'"):
        wrapper._self_get = "bound"
    assert wrapper._self_get is _engine._GET_STATIC
    del wrapper._self_get
    assert wrapper._self_get is _engine._GET_FUNCTION
    assert type(wrapper.__get__(object(), object)) is types.MethodType


@vectorcall_only
@pytest.mark.parametrize("implementation", ["compiled", "python"])
def test_the_call_reaches_the_function_as_it_was_made(implementation: str) -> None:
    # Positional, keyword, *args and **kwargs, through the vector and through tp_call
    # (functools.partial and a bound method call the wrapper differently), for the compiled
    # driver and for a Python one (use_compiled_drivers(False)).
    from flext_ctx_aspects import _engine, timed, with_correlation

    def signature(a: Any, /, b: Any = 2, *rest: Any, c: Any = 3, **more: Any) -> Any:
        return (a, b, rest, c, sorted(more.items()))

    previous = _engine.use_compiled_drivers(enabled=implementation == "compiled")
    try:
        decorated = [timed(signature), with_correlation(timed(signature))]
    finally:
        _engine.use_compiled_drivers(enabled=previous)
    calls: list[tuple[tuple[Any, ...], dict[str, Any]]] = [
        ((1,), {}),
        ((1, 5), {}),
        ((1, 5, 6, 7), {"c": 8}),
        ((1,), {"b": 4, "z": 9, "y": 0}),
    ]
    for function in decorated:
        for args, kwargs in calls:
            expected = signature(*args, **kwargs)
            assert function(*args, **kwargs) == expected
            assert type(function).__call__(function, *args, **kwargs) == expected
            assert functools.partial(function, *args)(**kwargs) == expected
        with pytest.raises(TypeError) as plain:
            signature()
        with pytest.raises(TypeError) as wrapped:
            function()
        assert str(wrapped.value) == str(plain.value)


@vectorcall_only
def test_what_wrapt_would_do_differently_goes_to_wrapt() -> None:
    # An uninitialised wrapper and a classmethod binding (wrapt probes __self__) take wrapt's
    # own __call__: the same error as wrapt's own wrapper type gives.
    from flext_ctx_aspects import _engine, timed

    class PlainSubclass(_FunctionWrapperBase):  # type: ignore[misc]
        pass

    with pytest.raises(AttributeError) as wrapts:
        PlainSubclass.__new__(PlainSubclass)()
    bare = _engine._wrapper_new(_engine.AspectWrapper)
    with pytest.raises(AttributeError) as ours:
        bare()
    assert str(ours.value) == str(wrapts.value).replace("PlainSubclass", "AspectWrapper")

    class Owner:
        @timed
        @classmethod
        def make(cls, x: int) -> tuple[Any, int]:
            return (cls, x)

    class Child(Owner):
        pass

    assert Owner.make(1) == (Owner, 1)
    assert Child.make(2) == (Child, 2)
    raw = vars(Owner)["make"]
    assert raw._self_binding == "classmethod"
    with pytest.raises(TypeError) as undecorated:
        classmethod(lambda cls: cls)()  # type: ignore[operator]
    with pytest.raises(TypeError) as decorated:
        raw()
    assert str(decorated.value) == str(undecorated.value)


@vectorcall_only
def test_reinitialising_a_wrapper_during_its_call_is_safe() -> None:
    # The call holds the function and the driver it started with.
    import gc

    from flext_ctx_aspects import _engine

    def first() -> str:
        return "first"

    def second() -> str:
        return "second"

    wrapper: Any = None

    def driver(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
        _engine._wrapper_init(wrapper, second, None, _engine._pass_through, None, "x")
        gc.collect()
        return wrapped(*args, **kwargs)

    wrapper = _engine._new_wrapper(
        first, driver, _engine._FUNCTION_BINDING, (), "function", False, False
    )
    assert wrapper() == "first"
    assert wrapper() == "second"


def test_updates_say_whether_they_read_the_call() -> None:
    # Updates that do not read the call get empty arguments from the compiled driver.
    from flext_ctx_aspects import _compile, _engine, arg, request_scope, service, with_correlation

    def work(x: int) -> int:
        return x

    def update_of(wrapper: Any) -> Any:
        target = _engine._make_target(wrapper.__wrapped__, "function")
        advices = [aspect.advise(target) for aspect in wrapper._self_aspects]
        return _engine._make_plan(target, advices, ("m", "work")).update

    assert not _compile.reads_call(update_of(with_correlation(service("svc")(work))))
    reading = request_scope(metadata={"x": arg("x")})(work)
    assert _compile.reads_call(update_of(reading))
    assert _compile.reads_call(lambda s, instance, args, kwargs: s)  # not compiled here


# --- the snapshot update as a program (_speedups.Update) -----------------------------------


def _update_of(wrapper: Any) -> Any:
    from flext_ctx_aspects import _engine

    target = _engine._make_target(wrapper.__wrapped__, "function")
    advices = [aspect.advise(target) for aspect in wrapper._self_aspects]
    return _engine._make_plan(target, advices, ("m", "work")).update


def _stacks() -> dict[str, Any]:
    from flext_ctx_aspects import request_scope, service, timed, with_correlation

    def work(x: int) -> int:
        return x

    return {
        "correlation": with_correlation(work),
        "inherited": with_correlation(inherit=True)(work),
        "correlation twice": with_correlation(with_correlation(work)),
        "service": service("svc", "1", "prod")(work),
        "request": request_scope(user_id="u", request_id="r-1")(work),
        "request, new id": request_scope(user_id="u")(work),
        "fused": with_correlation(service("svc", "1")(timed(request_scope(user_id="u")(work)))),
    }


def _snapshots() -> dict[str, tuple[Any, ...]]:
    from flext_ctx_aspects import _ids, _state

    _ids.rng.seed(99)
    fused = _update_of(_stacks()["fused"])
    inside = getattr(fused, "fallback", fused)(_state.EMPTY, None, (), {})
    return {"empty": _state.EMPTY, "inside a fused scope": inside}


@compiled_only
@pytest.mark.parametrize("stack", list(_stacks()))
@pytest.mark.parametrize("snapshot", list(_snapshots()))
def test_an_update_program_gives_what_its_python_source_gives(stack: str, snapshot: str) -> None:
    # The oracle is the Python update it was made from: same snapshot, and the same random
    # bits drawn (a seeded run draws the same ids in both implementations).
    from flext_ctx_aspects import _ids

    native = _update_of(_stacks()[stack])
    assert type(native) is _native.speedups.Update
    state = _snapshots()[snapshot]
    _ids.rng.seed(7)
    expected = native.fallback(state, None, (1,), {})
    after_python = _ids.rng.getstate()
    _ids.rng.seed(7)
    assert native(state, None, (1,), {}) == expected
    assert _ids.rng.getstate() == after_python


@compiled_only
def test_an_update_program_hands_a_configured_generator_and_a_trace_hook_to_python() -> None:
    from flext_ctx_aspects import _ids, _state, _trace

    native = _update_of(_stacks()["fused"])
    _ids.set_generator(lambda: "made-by-the-user")
    try:
        assert native(_state.EMPTY, None, (), {}) == native.fallback(_state.EMPTY, None, (), {})
        assert native(_state.EMPTY, None, (), {})[0] == "made-by-the-user"
    finally:
        _ids.set_generator(_ids.generate_id)
    seen: list[Any] = []

    def hook(trace: Any, enclosing: Any, parent: Any, correlation: str) -> Any:
        seen.append(correlation)
        return ("f" * 32, ("b" * 16, 1, None))

    _trace.external_trace[0] = hook
    try:
        result = native(_state.EMPTY, None, (), {})
    finally:
        _trace.external_trace[0] = None
    assert seen == [result[0]]
    assert result[10] == "f" * 32
    assert result[11] == ("b" * 16, 1, None)


@compiled_only
def test_a_configured_generator_leaves_programs_without_ids_in_c() -> None:
    from flext_ctx_aspects import _ids, _state

    handed_over: list[Any] = []

    def fallback(*args: Any) -> Any:
        handed_over.append(args)
        return args[0]

    constant_only = _native.speedups.Update(fallback, ("svc",), (), ((2, 0), (0, 1)), False)
    with_id = _native.speedups.Update(fallback, (), ((0,),), ((1, 0),), False)
    _ids.set_generator(lambda: "made-by-the-user")
    try:
        assert constant_only(_state.EMPTY, None, (), {}) == ("svc", _state.EMPTY[1])
        assert handed_over == []
        assert with_id(_state.EMPTY, None, (), {}) is _state.EMPTY
        assert len(handed_over) == 1
    finally:
        _ids.set_generator(_ids.generate_id)


@compiled_only
def test_an_update_program_fails_as_its_python_source_does() -> None:
    native = _update_of(_stacks()["correlation"])
    for bad in (None, (), ("too", "short")):
        with pytest.raises(Exception) as from_python:
            native.fallback(bad, None, (), {})
        with pytest.raises(type(from_python.value), match=str(from_python.value)):
            native(bad, None, (), {})


@compiled_only
def test_updates_that_read_the_call_or_write_metadata_stay_python() -> None:
    from flext_ctx_aspects import _compile, _engine, arg, request_scope

    def work(x: int) -> int:
        return x

    for wrapper in (
        request_scope(user_id=arg("x"))(work),
        request_scope(metadata={"tenant": "t"})(work),
    ):
        update = _update_of(wrapper)
        assert inspect.isfunction(update)
        assert _compile.program_of(update) is None
    previous = _engine.use_compiled_drivers(enabled=False)
    try:
        assert inspect.isfunction(_update_of(_stacks()["fused"]))  # the pure-Python engine
    finally:
        _engine.use_compiled_drivers(enabled=previous)


@compiled_only
def test_a_malformed_program_is_refused() -> None:
    make = _native.speedups.Update

    def fallback(*args: Any) -> Any:
        return args

    assert make(fallback, ("k",), ((0,), (1, (1, 0))), ((2, 0), (1, 1)), False)
    for steps, outputs in (
        (((1, (1, 0)),), ()),  # a step reading its own value
        (((9,),), ()),  # no such step
        (((0, (0, 1)),), ()),  # a new id takes no operand
        ((), ((2, 1),)),  # no such constant
        ((), ((5, 0),)),  # no such operand kind
        ((), ((0, -1),)),
    ):
        with pytest.raises(ValueError, match="Update"):
            make(fallback, ("k",), steps, outputs, False)
    with pytest.raises(ValueError, match="steps"):
        make(fallback, (), ((0,),) * 33, (), False)


@pytest.fixture(params=["from the state", "through getrandbits"])
def id_draw(request: pytest.FixtureRequest) -> Any:
    """Both ways the compiled update draws ids: from rng's state, or by calling it."""
    from flext_ctx_aspects import _engine

    if request.param == "through getrandbits":
        # A probe that does not match: configure_updates falls back to calling getrandbits.
        from flext_ctx_aspects import _ids, _trace

        assert not _native.speedups.configure_updates(
            _ids.active_generator,
            _ids.generate_id,
            _ids.randbits,
            _trace.external_trace,
            _ids.rng,
            random.Random,  # not _random.Random: its instance size is another
            random.Random(1),
            ["0" * 32],
        )
    yield request.param
    assert _engine._configure_updates() is True


@compiled_only
def test_ids_are_drawn_from_the_random_state_where_its_layout_checks_out() -> None:
    from flext_ctx_aspects import _engine

    # CPython 3.10-3.13's _random.Random: a change of its layout shows here first.
    assert _engine.IDS_FROM_STATE is True


@compiled_only
@pytest.mark.parametrize("stack", ["correlation", "fused"])
def test_both_id_draws_give_the_python_ids(id_draw: str, stack: str) -> None:
    from flext_ctx_aspects import _ids, _state

    native = _update_of(_stacks()[stack])
    for seed in range(3):
        _ids.rng.seed(seed)
        # 200 calls: past a refill of the 624-word state.
        expected = [native.fallback(_state.EMPTY, None, (), {}) for _ in range(200)]
        _ids.rng.seed(seed)
        assert [native(_state.EMPTY, None, (), {}) for _ in range(200)] == expected


@compiled_only
@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_a_forked_child_draws_other_compiled_ids_than_its_parent(id_draw: str) -> None:
    from flext_ctx_aspects import FlextContext, with_correlation

    @with_correlation
    def current() -> str:
        correlation_id = FlextContext.Correlation.get_correlation_id()
        assert correlation_id is not None
        return correlation_id

    current()
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: report its next id and leave without running pytest's teardown
        os.write(write, current().encode())
        os._exit(0)
    os.close(write)
    child_id = os.read(read, 64).decode()
    os.close(read)
    os.waitpid(pid, 0)
    assert len(child_id) == 32
    assert child_id != current()
