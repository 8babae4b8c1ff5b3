"""Build hook: compile the optional C module ``flext_ctx_aspects._speedups``.

Run by hatchling for wheels and editable installs (``pip install .`` / ``pip install -e .``).
With a C compiler (the one Python was built with, from ``sysconfig``) the module is built
next to its source; without one, or when compiling fails, the package installs as pure
Python and says so in one informational line: never an error. ``FLEXT_CTX_PURE_PYTHON=1``
at install time skips the build.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
import sysconfig
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent
SOURCE = ROOT / "src" / "flext_ctx_aspects" / "_speedups.c"
PURE_MESSAGE = "installing the pure-Python implementation (same behaviour, slower)"


def extension_path() -> Path:
    """Where the built module goes: next to its source, named for this Python."""
    suffix = sysconfig.get_config_var("EXT_SUFFIX") or ".so"
    return SOURCE.with_name(f"_speedups{suffix}")


def compile_command(output: Path) -> list[str]:
    """The compiler command line this Python's own build would use for an extension."""
    compiler = os.environ.get("CC")  # as setuptools does: $CC wins over Python's own build
    linker = f"{compiler} -shared" if compiler else sysconfig.get_config_var("LDSHARED")
    command = shlex.split(linker or "cc -shared")
    flags = shlex.split(sysconfig.get_config_var("CCSHARED") or "-fPIC")
    include = sysconfig.get_paths()["include"]
    return [*command, *flags, "-O2", "-std=c99", f"-I{include}", str(SOURCE), "-o", str(output)]


def build_speedups(display: Callable[[str], None]) -> Path | None:
    """Compile the module; return its path, or None (pure Python) after saying why."""
    if os.environ.get("FLEXT_CTX_PURE_PYTHON", "").strip().lower() in {"1", "true", "yes", "on"}:
        display(f"flext-ctx-aspects: FLEXT_CTX_PURE_PYTHON is set: {PURE_MESSAGE}")
        return None
    output = extension_path()
    command = compile_command(output)
    if shutil.which(command[0]) is None:
        display(f"flext-ctx-aspects: no C compiler ({command[0]!r} not found): {PURE_MESSAGE}")
        return None
    try:
        # The command is this Python's own compiler line (sysconfig / $CC), not user input.
        subprocess.run(command, check=True, capture_output=True, text=True, timeout=300)  # noqa: S603
    except (OSError, subprocess.SubprocessError) as error:
        detail = getattr(error, "stderr", "") or str(error)
        display(
            f"flext-ctx-aspects: compiling the C module failed: {PURE_MESSAGE}\n{detail.strip()}"
        )
        output.unlink(missing_ok=True)
        return None
    return output


try:
    from hatchling.builders.hooks.plugin.interface import (  # type: ignore[import-not-found]
        BuildHookInterface,
    )
except ImportError:  # imported by the tests, outside a build
    pass
else:

    class SpeedupsBuildHook(BuildHookInterface):  # type: ignore[misc,type-arg]
        """Compile ``_speedups`` into the wheel (or in place, for editable installs)."""

        PLUGIN_NAME = "custom"

        def initialize(self, version: str, build_data: dict[str, Any]) -> None:
            """Build the module; mark the wheel as platform-specific when it is built."""
            if self.target_name != "wheel":
                return  # the sdist ships the C source, not a build
            built = build_speedups(lambda message: print(message, file=sys.stderr))
            if built is None:
                return
            build_data["pure_python"] = False
            build_data["infer_tag"] = True
            if version != "editable":
                relative = built.relative_to(ROOT).as_posix()
                build_data["force_include"][relative] = relative.removeprefix("src/")
