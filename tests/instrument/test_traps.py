"""The traps that break real test suites under a naive wrapper: each in a package of its own."""

from __future__ import annotations

import abc
import copy
import doctest
import importlib
import logging
import pickle
import sys
import typing
import warnings
from collections.abc import Iterator
from multiprocessing.reduction import ForkingPickler
from typing import Any, cast

import pytest

from flext_ctx_aspects.config import load_config
from flext_ctx_aspects.instrument import instrument
from flext_ctx_aspects.instrument._select import select_module
from flext_ctx_aspects.testing import capture_operations

MakePackage = Any


def config(package: str, **keys: Any) -> dict[str, Any]:
    return {"instrument": {"include": [f"{package}.*"], **keys}}


def load(make_package: MakePackage, source: str, name: str = "mod") -> tuple[str, Any]:
    package = make_package({f"{name}.py": source})
    return package, f"{package}.{name}"


PICKLING = """\
class Order:
    def total(self):
        return 3

    @classmethod
    def empty(cls):
        return cls()

    @staticmethod
    def tax(x):
        return x

def checkout(x):
    return x + 1

async def pay(x):
    return x

def items(n):
    yield from range(n)
"""


def test_pickle_and_copy_by_reference(make_package: MakePackage) -> None:
    _, name = load(make_package, PICKLING)
    with instrument(config(name.partition(".")[0])):
        module = importlib.import_module(name)
        for obj in (module.checkout, module.pay, module.items, module.Order.tax):
            assert hasattr(obj, "_self_aspects")
            assert pickle.loads(pickle.dumps(obj)) is obj
            assert copy.copy(obj) is obj
            assert copy.deepcopy(obj) is obj
            assert pickle.loads(ForkingPickler.dumps(obj)) is obj  # what multiprocessing sends
        bound = module.Order().total
        assert pickle.loads(pickle.dumps(bound))() == 3
        assert pickle.loads(pickle.dumps(module.Order.empty))().total() == 3
        assert copy.deepcopy({"f": module.checkout})["f"] is module.checkout


FROZEN = """\
def frozen_setattr(self, name, value):
    raise AttributeError(f"{type(self).__name__} is frozen")

def describe(self):
    return "point"

class Point:
    __setattr__ = frozen_setattr
    describe = describe

    def __init__(self, x):
        object.__setattr__(self, "x", x)
"""


def test_module_function_stored_as_class_attribute_keeps_identity(
    make_package: MakePackage,
) -> None:
    _, name = load(make_package, FROZEN)
    with instrument(config(name.partition(".")[0])), capture_operations() as operations:
        module = importlib.import_module(name)
        assert hasattr(module.frozen_setattr, "_self_aspects")
        assert module.Point.__setattr__ is module.frozen_setattr
        assert module.Point.describe is module.describe
        point = module.Point(1)
        with pytest.raises(AttributeError, match="Point is frozen"):
            point.x = 2
        assert point.describe() == "point"
    assert len(operations) == 2  # one wrapper per original: the same one in both places
    assert module.Point.__setattr__ is module.frozen_setattr


FRAMES = """\
import inspect
import logging
import sys
import warnings
from sys import _getframe as grab

def via_getframe():
    return sys._getframe(1).f_code.co_name

def via_alias():
    return grab(1).f_code.co_name

def via_currentframe():
    return inspect.currentframe().f_back.f_code.co_name

def via_stack():
    return inspect.stack()[1].function

def via_warn():
    warnings.warn("old", DeprecationWarning, stacklevel=2)

def via_positional_warn():
    warnings.warn("old", DeprecationWarning, 2)

def via_logging():
    logging.getLogger("traps").warning("here", stacklevel=2)

def _helper():
    return sys._getframe(2).f_code.co_name

def via_helper():
    return _helper()

def innocent():
    return 1

def via_generator():
    yield sys._getframe(1).f_code.co_name
"""


FRAME_FUNCTIONS = (
    "via_getframe",
    "via_alias",
    "via_currentframe",
    "via_stack",
    "via_warn",
    "via_positional_warn",
    "via_logging",
    "via_helper",
)


@pytest.fixture(params=["python", "compiled"])
def driver_implementation(request: pytest.FixtureRequest) -> Iterator[str]:
    # The drivers this process decorates with: compiled sync drivers add no frame.
    from flext_ctx_aspects import _engine

    if request.param == "compiled" and (_engine.speedups is None or not _engine._WRAPT_COMPILED):
        pytest.skip("the compiled drivers are not built, or wrapt is pure Python")
    previous = _engine.use_compiled_drivers(enabled=request.param == "compiled")
    try:
        yield request.param
    finally:
        _engine.use_compiled_drivers(enabled=previous)


def test_frame_sensitive_functions_are_skipped_and_reported(
    make_package: MakePackage, caplog: pytest.LogCaptureFixture, driver_implementation: str
) -> None:
    _, name = load(make_package, FRAMES)
    module = importlib.import_module(name)
    plan = select_module(module, load_config(config(name.partition(".")[0]), environ={}))
    reasons = {s.qualname: s.reason for s in plan.skipped}
    selected = [s.qualname for s in plan.selected]
    if driver_implementation == "python":
        for function in FRAME_FUNCTIONS:
            assert reasons[function].startswith("frame-sensitive"), function
        assert "calls frame-sensitive _helper()" in reasons["via_helper"]
        assert selected == ["innocent"]
    else:
        # Wrapped: their compiled driver is no frame, so they still see their real caller.
        assert selected == [*FRAME_FUNCTIONS, "innocent"]
    # A generator's driver is Python (a frame around each step): skipped either way.
    assert reasons["via_generator"] == (
        "frame-sensitive (_getframe): a wrapper would be seen as its caller"
    )

    def caller() -> tuple[str, ...]:
        return (
            module.via_getframe(),
            module.via_alias(),
            module.via_currentframe(),
            module.via_stack(),
            module.via_helper(),
        )

    expected = caller()
    assert expected == ("caller",) * 5
    with instrument(config(name.partition(".")[0])):
        assert caller() == expected
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            module.via_warn()
        assert caught[0].filename == __file__
        caplog.set_level(logging.WARNING, logger="traps")
        module.via_logging()
        assert caplog.records[-1].pathname == __file__


def test_an_escaped_frame_sensitive_wrapper_stays_frameless_after_undo(
    make_package: MakePackage, driver_implementation: str
) -> None:
    _, name = load(make_package, FRAMES)
    module = importlib.import_module(name)
    handle = instrument(config(name.partition(".")[0]))
    escaped = module.via_getframe if driver_implementation == "compiled" else module.innocent
    handle.uninstrument()
    assert hasattr(escaped, "_self_aspects")  # still the wrapper object, released

    def caller() -> str:
        return cast("str", escaped())

    with capture_operations() as operations:
        result = caller()
    assert operations == []
    if driver_implementation == "compiled":
        assert result == "caller"  # no Python frame between it and its caller
        assert escaped._self_wrapper.released
    else:
        assert result == 1


DUNDERS = """\
class Base:
    seen = []

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        Base.seen.append(cls.__name__)

    def __class_getitem__(cls, item):
        return (cls, item)

    @classmethod
    def __subclasshook__(cls, other):
        return NotImplemented

class Field:
    def __set_name__(self, owner, name):
        self.name = name

    def __get__(self, instance, owner=None):
        return self.name

    def __repr__(self):
        return "Field()"
"""


def test_dunders_stay_unwrapped(make_package: MakePackage) -> None:
    _, name = load(make_package, DUNDERS)
    package = name.partition(".")[0]
    with instrument(config(package, functions=["*", "*.__*__"])):
        module = importlib.import_module(name)
        for attribute in ("__init_subclass__", "__class_getitem__", "__subclasshook__"):
            assert not hasattr(vars(module.Base)[attribute], "_self_aspects"), attribute
        for attribute in ("__set_name__", "__get__"):
            assert not hasattr(vars(module.Field)[attribute], "_self_aspects"), attribute
        assert hasattr(vars(module.Field)["__repr__"], "_self_aspects")  # named: wrapped

        class Child(module.Base):
            attr = module.Field()

        assert module.Base.seen == ["Child"]
        assert module.Base[int] == (module.Base, int)
        assert Child().attr == "attr"
    with instrument(config(package)):
        assert not hasattr(vars(module.Field)["__repr__"], "_self_aspects")  # default: skipped


DESCRIPTORS = """\
import abc
import functools
import typing

@functools.singledispatch
def show(value):
    return "object"

@show.register
def _(value: int):
    return "int"

class Shape(abc.ABC):
    @abc.abstractmethod
    def area(self):
        ...

    @property
    def name(self):
        return "shape"

    @functools.cached_property
    def expensive(self):
        return object()

class Square(Shape):
    def area(self):
        return 4

@typing.overload
def parse(x: int) -> int: ...
@typing.overload
def parse(x: str) -> str: ...
def parse(x):
    return x
"""


def test_singledispatch_property_abstract_and_overload_keep_working(
    make_package: MakePackage,
) -> None:
    _, name = load(make_package, DESCRIPTORS)
    with instrument(config(name.partition(".")[0])):
        module = importlib.import_module(name)
        assert hasattr(module.show, "_self_aspects")
        assert (module.show(1), module.show("x")) == ("int", "object")

        @module.show.register
        def _(value: float) -> str:
            return "float"

        assert module.show(1.5) == "float"
        assert isinstance(vars(module.Shape)["name"], property)
        assert not hasattr(vars(module.Shape)["area"], "_self_aspects")
        assert module.Shape.area.__isabstractmethod__ is True
        assert module.Shape.__abstractmethods__ == frozenset({"area"})
        with pytest.raises(TypeError, match="abstract"):
            module.Shape()
        square = module.Square()
        assert (square.area(), square.name) == (4, "shape")
        assert square.expensive is square.expensive
        assert isinstance(square, abc.ABC)
        assert hasattr(module.parse, "_self_aspects")
        if sys.version_info >= (3, 11):
            assert len(typing.get_overloads(module.parse)) == 2


DOCTESTS = '''\
def add(a, b):
    """Add.

    >>> add(1, 2)
    3
    """
    return a + b

same = add

class Calc:
    """A calculator.

    >>> Calc().mul(2, 3)
    6
    """

    def mul(self, a, b):
        """Multiply.

        >>> Calc().mul(2, 2)
        4
        """
        return a * b

    @staticmethod
    def neg(a):
        """Negate.

        >>> Calc.neg(1)
        -1
        """
        return -a
'''


def test_doctest_discovery_finds_the_same_doctests(make_package: MakePackage) -> None:
    _, name = load(make_package, DOCTESTS)
    module = importlib.import_module(name)
    finder = doctest.DocTestFinder()

    def found() -> list[tuple[str, int]]:
        return sorted((t.name, len(t.examples)) for t in finder.find(module) if t.examples)

    before = found()
    assert len(before) == 4
    with instrument(config(name.partition(".")[0])):
        assert hasattr(module.add, "_self_aspects")
        assert found() == before
        runner = doctest.DocTestRunner()
        for test in finder.find(module):
            runner.run(test)
        assert runner.failures == 0
        assert runner.tries == 4


OTHERS = """\
import functools

@functools.lru_cache(maxsize=None)
def cached(x):
    return x

partial_one = functools.partial(int, base=2)

class Meta(type):
    def __setattr__(cls, name, value):
        if name == "locked":
            raise AttributeError("locked is read-only")
        super().__setattr__(name, value)

class Locked(metaclass=Meta):
    def locked(self):
        return "still here"

    def free(self):
        return "free"
"""


def test_other_callables_are_listed_and_refusing_classes_do_not_break(
    make_package: MakePackage,
) -> None:
    _, name = load(make_package, OTHERS)
    module = importlib.import_module(name)
    plan = select_module(module, load_config(config(name.partition(".")[0]), environ={}))
    reasons = {s.qualname: s.reason for s in plan.skipped}
    assert reasons["cached"] == "not a Python function (_lru_cache_wrapper)"
    with instrument(config(name.partition(".")[0])) as handle:
        assert module.Locked().locked() == "still here"  # the metaclass refused: left as is
        assert handle.refused == [
            (f"{name}:Locked.locked", "Locked refuses attribute assignment (locked is read-only)")
        ]
        assert hasattr(vars(module.Locked)["free"], "_self_aspects")
        assert module.cached(2) == 2


@pytest.mark.slow
def test_multiprocessing_sends_instrumented_functions(make_package: MakePackage) -> None:
    import multiprocessing

    _, name = load(make_package, PICKLING)
    with instrument(config(name.partition(".")[0])):
        module = importlib.import_module(name)
        assert hasattr(module.checkout, "_self_aspects")
        context = multiprocessing.get_context("spawn")
        with context.Pool(1) as pool:
            assert pool.map(module.checkout, [1, 2]) == [2, 3]
            assert pool.apply(module.Order.tax, (5,)) == 5
