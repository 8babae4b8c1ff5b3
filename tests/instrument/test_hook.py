"""The import hook and the undo: what gets wrapped, when, and how it is put back."""

from __future__ import annotations

import asyncio
import importlib
import importlib.resources
import inspect
import subprocess
import sys
import threading
import zipfile
from pathlib import Path
from typing import Any
from unittest import mock

import pytest

from flext_ctx_aspects.errors import ConfigError, ConfigWarning
from flext_ctx_aspects.instrument import instrument, no_instrument, uninstrument
from flext_ctx_aspects.instrument._api import Instrumentation
from flext_ctx_aspects.instrument._hook import InstrumentingFinder, _InstrumentingLoader
from flext_ctx_aspects.testing import capture_operations

MakePackage = Any

KINDS = """\
import asyncio

def plain(x):
    return ("plain", x)

async def coro(x):
    await asyncio.sleep(0)
    return ("coro", x)

def gen(x):
    received = yield ("gen", x)
    yield received

async def agen(x):
    yield ("agen", x)

class Box:
    def plain(self, x):
        return ("plain", x, type(self).__name__)

    async def coro(self, x):
        return ("coro", x, type(self).__name__)

    def gen(self, x):
        yield ("gen", x, type(self).__name__)

    async def agen(self, x):
        yield ("agen", x, type(self).__name__)

    @classmethod
    def cplain(cls, x):
        return ("plain", x, cls.__name__)

    @classmethod
    async def ccoro(cls, x):
        return ("coro", x, cls.__name__)

    @classmethod
    def cgen(cls, x):
        yield ("gen", x, cls.__name__)

    @classmethod
    async def cagen(cls, x):
        yield ("agen", x, cls.__name__)

    @staticmethod
    def splain(x):
        return ("plain", x)

    @staticmethod
    async def scoro(x):
        return ("coro", x)

    @staticmethod
    def sgen(x):
        yield ("gen", x)

    @staticmethod
    async def sagen(x):
        yield ("agen", x)

class SubBox(Box):
    pass
"""


def config(package: str, **instrument_keys: Any) -> dict[str, Any]:
    return {"instrument": {"include": [package, f"{package}.*"], **instrument_keys}}


def run(value: Any) -> Any:
    """Drive whatever a callable returned to its result (the oracle compares these)."""
    if inspect.iscoroutine(value):
        return asyncio.run(value)
    if inspect.isgenerator(value):
        first = next(value)
        return [first, *value]
    if inspect.isasyncgen(value):

        async def collect() -> list[Any]:
            return [item async for item in value]

        return asyncio.run(collect())
    return value


CALLS = [
    ("plain", lambda m: m.plain(1)),
    ("coro", lambda m: m.coro(1)),
    ("gen", lambda m: m.gen(1)),
    ("agen", lambda m: m.agen(1)),
    *[
        (f"{kind}-{binding}", call)
        for kind, binding, call in [
            ("plain", "method", lambda m: m.SubBox().plain(1)),
            ("coro", "method", lambda m: m.SubBox().coro(1)),
            ("gen", "method", lambda m: m.SubBox().gen(1)),
            ("agen", "method", lambda m: m.SubBox().agen(1)),
            ("plain", "classmethod", lambda m: m.SubBox.cplain(1)),
            ("coro", "classmethod", lambda m: m.SubBox.ccoro(1)),
            ("gen", "classmethod", lambda m: m.SubBox.cgen(1)),
            ("agen", "classmethod", lambda m: m.SubBox.cagen(1)),
            ("plain", "staticmethod", lambda m: m.SubBox.splain(1)),
            ("coro", "staticmethod", lambda m: m.SubBox().scoro(1)),
            ("gen", "staticmethod", lambda m: m.SubBox.sgen(1)),
            ("agen", "staticmethod", lambda m: m.Box.sagen(1)),
        ]
    ],
]


@pytest.mark.parametrize(("kind", "call"), CALLS, ids=[c[0] for c in CALLS])
def test_every_callable_kind_behaves_as_undecorated(
    make_package: MakePackage, kind: str, call: Any
) -> None:
    package = make_package({"kinds.py": KINDS})
    module = importlib.import_module(f"{package}.kinds")
    expected = run(call(module))  # the oracle: the same call, not instrumented
    del sys.modules[f"{package}.kinds"]
    with instrument(config(package)) as handle, capture_operations() as operations:
        module = importlib.import_module(f"{package}.kinds")
        assert handle.imported_early == (package,)
        assert run(call(module)) == expected
    assert len(operations) == 1
    assert operations[0].status == "ok"
    assert operations[0].name.startswith(f"{package}.kinds.")


def test_include_exclude_and_rules(make_package: MakePackage) -> None:
    package = make_package(
        {
            "api.py": "def handle():\n    return 1\ndef other():\n    return 2\n",
            "migrations/__init__.py": "",
            "migrations/m1.py": "def up():\n    return 3\n",
        }
    )
    settings = config(
        package,
        exclude=[f"{package}.migrations.*"],
        rules=[
            {"match": f"{package}.api:other", "aspects": []},
            {"match": f"{package}.*:handle", "aspects": {"timed": {"name": "custom"}}},
        ],
    )
    with instrument(settings), capture_operations() as operations:
        api = importlib.import_module(f"{package}.api")
        m1 = importlib.import_module(f"{package}.migrations.m1")
        assert (api.handle(), api.other(), m1.up()) == (1, 2, 3)
    assert [op.name for op in operations] == ["custom"]
    assert not hasattr(m1.up, "_self_aspects")
    assert not hasattr(api.other, "_self_aspects")


def test_already_imported_modules_and_other_modules_references(
    make_package: MakePackage, caplog: pytest.LogCaptureFixture
) -> None:
    package = make_package(
        {
            "core.py": "def work():\n    return 'w'\n",
            "user.py": "from .core import work\n\ndef use():\n    return work()\n",
        }
    )
    core = importlib.import_module(f"{package}.core")
    user = importlib.import_module(f"{package}.user")
    original = core.work
    caplog.set_level("INFO", logger="flext_ctx_aspects")
    settings = config(package, exclude=[f"{package}.user"])
    with instrument(settings) as handle, capture_operations() as operations:
        assert f"{package}.core" in handle.imported_early
        assert user.work is core.work is not original
        assert user.use() == "w"
    assert len(operations) == 1
    assert f"{package}.core" in caplog.text
    assert core.work is original
    assert user.work is original


def test_reload_instruments_again(make_package: MakePackage) -> None:
    package = make_package({"mod.py": "def f():\n    return 1\n"})
    with instrument(config(package)):
        module = importlib.import_module(f"{package}.mod")
        first = module.f
        reloaded = importlib.reload(module)
        assert reloaded is module
        assert module.f is not first
        assert hasattr(module.f, "_self_aspects")
        assert not isinstance(module.__spec__.loader, _InstrumentingLoader)
        with capture_operations() as operations:
            module.f()
        assert len(operations) == 1
    assert not hasattr(module.f, "_self_aspects")


def test_undo_restores_identity_and_leaves_later_patches_alone(
    make_package: MakePackage,
) -> None:
    package = make_package(
        {
            "mod.py": """\
            def f():
                return 1

            def g():
                return 2

            class C:
                def m(self):
                    return 3

                @classmethod
                def k(cls):
                    return cls
            """
        }
    )
    module = importlib.import_module(f"{package}.mod")
    originals = (module.f, module.g, vars(module.C)["m"], vars(module.C)["k"])
    handle = instrument(config(package))
    stray = module.f
    stray_classmethod = module.C.k  # bound while instrumented
    with capture_operations() as operations:
        assert stray_classmethod() is module.C
    assert [op.name for op in operations] == [f"{package}.mod.C.k"]
    patched = mock.patch.object(module, "g", return_value="mocked")
    patched.start()
    handle()
    try:
        assert module.g() == "mocked"  # a later patch is left alone
    finally:
        patched.stop()
    assert module.f is originals[0]
    assert vars(module.C)["m"] is originals[2]
    assert vars(module.C)["k"] is originals[3]
    with capture_operations() as operations:
        assert stray() == 1  # a stray wrapper is now a pass-through
        assert stray_classmethod() is module.C
    assert operations == []
    handle.uninstrument()  # idempotent


def test_handle_forms_and_uninstrument(make_package: MakePackage) -> None:
    package = make_package({"mod.py": "def f():\n    return 1\n"})
    module = importlib.import_module(f"{package}.mod")
    original = module.f
    handle = instrument(config(package))
    assert isinstance(handle, Instrumentation)
    assert sum(isinstance(f, InstrumentingFinder) for f in sys.meta_path) == 1
    with pytest.warns(RuntimeWarning, match="another instrumentation is active"):
        second = instrument(config(package))
    assert vars(module)["f"]._self_aspects == handle.ledger.wrapper_for(original)._self_aspects
    assert len(second.ledger) == 0  # nothing wrapped twice
    assert sum(isinstance(f, InstrumentingFinder) for f in sys.meta_path) == 1
    assert uninstrument() == 2
    assert module.f is original
    assert not any(isinstance(f, InstrumentingFinder) for f in sys.meta_path)


def test_no_instrument_marker(make_package: MakePackage) -> None:
    package = make_package(
        {
            "mod.py": """\
            from flext_ctx_aspects.instrument import no_instrument

            @no_instrument
            def f():
                return 1

            @no_instrument
            class Quiet:
                def m(self):
                    return 2

            class Loud:
                @no_instrument
                @classmethod
                def k(cls):
                    return 3

                def m(self):
                    return 4
            """
        }
    )
    with instrument(config(package)):
        module = importlib.import_module(f"{package}.mod")
        assert not hasattr(module.f, "_self_aspects")
        assert not hasattr(vars(module.Quiet)["m"], "_self_aspects")
        assert not hasattr(vars(module.Loud)["k"], "_self_aspects")
        assert hasattr(vars(module.Loud)["m"], "_self_aspects")
    with pytest.raises(TypeError, match="cannot mark builtin_function_or_method"):
        no_instrument(len)


def test_concurrent_imports_from_threads(make_package: MakePackage) -> None:
    files = {f"m{i}.py": f"def f{i}():\n    return {i}\n" for i in range(24)}
    package = make_package(files)
    errors: list[BaseException] = []
    barrier = threading.Barrier(8)

    def importer(start: int) -> None:
        try:
            barrier.wait()
            for i in range(start, start + 24):
                module = importlib.import_module(f"{package}.m{i % 24}")
                assert getattr(module, f"f{i % 24}")() == i % 24
        except BaseException as exc:  # collected and re-raised in the main thread
            errors.append(exc)

    with instrument(config(package)) as handle:
        threads = [threading.Thread(target=importer, args=(n * 3,)) for n in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert errors == []
        for i in range(24):
            module = sys.modules[f"{package}.m{i}"]
            assert hasattr(getattr(module, f"f{i}"), "_self_aspects")
        assert len(handle.ledger) == 24  # each function wrapped exactly once


def test_namespace_package(make_package: MakePackage, tmp_path: Path) -> None:
    name = f"ns_{tmp_path.name[-6:].replace('-', '_')}"
    make_package({"part.py": "def f():\n    return 'ns'\n"}, name=name)
    with instrument({"instrument": {"include": [f"{name}.*"]}}), capture_operations() as ops:
        module = importlib.import_module(f"{name}.part")
        assert not hasattr(sys.modules[name], "__file__") or sys.modules[name].__file__ is None
        assert module.f() == "ns"
    assert len(ops) == 1


def test_zip_import_resources_and_getsource(make_package: MakePackage, tmp_path: Path) -> None:
    package = make_package(
        {"mod.py": "def f():\n    '''Doc.'''\n    return 1\n", "data.txt": "hello"}
    )
    with instrument(config(package)):
        module = importlib.import_module(f"{package}.mod")
        assert inspect.getsource(module.f).startswith("def f():")
        text = importlib.resources.files(package).joinpath("data.txt").read_text()
        assert text == "hello"
        assert not isinstance(module.__spec__.loader, _InstrumentingLoader)
    archive = tmp_path / "zipped.zip"
    zipname = f"zipped_{tmp_path.name[-6:].replace('-', '_')}"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr(f"{zipname}/__init__.py", "def z():\n    return 'z'\n")
    sys.path.insert(0, str(archive))
    try:
        with instrument({"instrument": {"include": [zipname]}}), capture_operations() as ops:
            zipped = importlib.import_module(zipname)
            assert zipped.z() == "z"
            assert inspect.getsource(zipped.z).startswith("def z")
        assert len(ops) == 1
    finally:
        sys.path.remove(str(archive))
        sys.modules.pop(zipname, None)


def test_subclass_of_an_instrumented_class_defined_later(make_package: MakePackage) -> None:
    package = make_package(
        {
            "base.py": """\
            class Base:
                @classmethod
                def create(cls):
                    return cls()

                def who(self):
                    return type(self).__name__
            """,
            "tests_free.py": """\
            from .base import Base

            class Child(Base):
                pass
            """,
        }
    )
    with instrument(config(package)), capture_operations() as operations:
        child_module = importlib.import_module(f"{package}.tests_free")
        made = child_module.Child.create()
        assert type(made) is child_module.Child
        assert made.who() == "Child"
    assert [op.name.rsplit(".", 2)[-2:] for op in operations] == [
        ["Base", "create"],
        ["Base", "who"],
    ]


def test_strict_refuses_includes_matching_nothing() -> None:
    settings = {"instrument": {"include": ["no_such_package_qq"], "strict": True}}
    with pytest.raises(ConfigError, match="no_such_package_qq"):
        instrument(settings)
    with pytest.warns(ConfigWarning, match="globs matching importable modules"):
        instrument({"instrument": {"include": ["no_such_package_qq"]}}).uninstrument()


def test_test_modules_are_skipped_unless_asked(make_package: MakePackage) -> None:
    package = make_package(
        {"test_things.py": "def test_a():\n    return 1\n", "conftest.py": "def f():\n    pass\n"}
    )
    with instrument(config(package)):
        module = importlib.import_module(f"{package}.test_things")
        assert not hasattr(module.test_a, "_self_aspects")
    del sys.modules[f"{package}.test_things"]
    with instrument(config(package, include_tests=True)):
        module = importlib.import_module(f"{package}.test_things")
        assert hasattr(module.test_a, "_self_aspects")


def test_switches_are_applied_and_restored(make_package: MakePackage) -> None:
    from flext_ctx_aspects.settings import current_settings

    before = current_settings()
    with instrument({"instrument": {"include": []}, "sample_rate": 0.5, "sinks": ["stats"]}):
        assert current_settings().sample_rate == 0.5
        assert current_settings().sinks == ("stats",)
    assert current_settings() is before


RESTORED = """\
import importlib, sys
from flext_ctx_aspects.instrument import instrument

with instrument({"instrument": {"include": ["PKG.*"]}}):
    module = importlib.import_module("PKG.mod")
    assert type(module.__loader__).__name__ == "SourceFileLoader", module.__loader__
    assert module.__spec__.loader is module.__loader__
    importlib.reload(module)
    assert type(module.__loader__).__name__ == "SourceFileLoader", module.__loader__
    assert module.__spec__.loader is module.__loader__
    assert hasattr(module.f, "_self_aspects")
print("ok")
"""


def test_loader_and_spec_restored_in_a_clean_interpreter(
    make_package: MakePackage, tmp_path: Path
) -> None:
    # In this test run other import hooks (ddtrace's, when installed) chain loaders in
    # front of ours and put back what they saw; a fresh interpreter has only ours.
    package = make_package({"mod.py": "def f():\n    return 1\n"})
    script = RESTORED.replace("PKG", package)
    env = {**__import__("os").environ}
    env["PYTHONPATH"] = f"{tmp_path}{__import__('os').pathsep}{env.get('PYTHONPATH', '')}"
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, env=env, check=False
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"
