"""Every ```python block of the docs and the README runs, page by page.

Blocks of one page run in order in one namespace, so a page can build on its earlier blocks.
A block whose first line is ``# doc: no-run`` is shown but not run (for snippets that need a
server or another process). Each page runs with an empty context, and must leave it empty.
"""

from __future__ import annotations

import asyncio
import re
import sys
import types
from pathlib import Path

import pytest

from flext_ctx_aspects import FlextContext

ROOT = Path(__file__).resolve().parent.parent
PAGES = sorted([*ROOT.joinpath("docs").glob("*.md"), ROOT / "README.md"])
BLOCK = re.compile(r"^```python\n(.*?)^```", re.DOTALL | re.MULTILINE)


def python_blocks(page: Path) -> list[str]:
    blocks = BLOCK.findall(page.read_text(encoding="utf-8"))
    return [b for b in blocks if not b.lstrip().startswith("# doc: no-run")]


PAGES_WITH_CODE = [p for p in PAGES if python_blocks(p)]


@pytest.mark.parametrize("page", PAGES_WITH_CODE, ids=lambda p: p.name)
def test_page_examples_run(page: Path) -> None:
    # A real module, so that dataclasses, pickling and typing find what the blocks define.
    module = types.ModuleType(f"docs_{page.stem.replace('-', '_')}")
    module.__dict__["asyncio"] = asyncio
    sys.modules[module.__name__] = module
    try:
        for number, block in enumerate(python_blocks(page), start=1):
            code = compile(block, f"{page.name} block {number}", "exec")
            exec(code, module.__dict__)  # noqa: S102 - our own documentation
    finally:
        del sys.modules[module.__name__]
        FlextContext.Utilities.clear_context()
