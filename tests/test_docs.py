"""Every ```python block of the docs and the README runs, page by page.

Blocks of one page run in order in one namespace, so a page can build on its earlier blocks,
in a fresh interpreter per page. A block whose first line is ``# doc: no-run`` is shown but
not run (for snippets that need a server or another process). Each page must leave the
context empty.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PAGES = sorted([*ROOT.joinpath("docs").glob("*.md"), ROOT / "README.md"])
BLOCK = re.compile(r"^```python\n(.*?)^```", re.DOTALL | re.MULTILINE)


def python_blocks(page: Path) -> list[str]:
    blocks = BLOCK.findall(page.read_text(encoding="utf-8"))
    return [b for b in blocks if not b.lstrip().startswith("# doc: no-run")]


PAGES_WITH_CODE = [p for p in PAGES if python_blocks(p)]


# Runs one page's blocks in order, in one real module (so that dataclasses, pickling and
# typing find what the blocks define), in a fresh interpreter: a page must work on its own,
# as a reader copies it, not only after the rest of the suite has imported the package.
RUN_PAGE = """
import asyncio, re, sys, types
from pathlib import Path
from flext_ctx_aspects import FlextContext
page = Path(sys.argv[1])
blocks = re.findall(sys.argv[2], page.read_text(encoding="utf-8"), re.DOTALL | re.MULTILINE)
module = types.ModuleType("docs_" + page.stem.replace("-", "_"))
module.__dict__["asyncio"] = asyncio
sys.modules[module.__name__] = module
number = 0
for block in blocks:
    if block.lstrip().startswith("# doc: no-run"):
        continue
    number += 1
    exec(compile(block, f"{page.name} block {number}", "exec"), module.__dict__)
assert FlextContext.Correlation.get_correlation_id() is None, "the page leaked context"
"""


@pytest.mark.parametrize("page", PAGES_WITH_CODE, ids=lambda p: p.name)
def test_page_examples_run_on_their_own(page: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-c", RUN_PAGE, str(page), BLOCK.pattern],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        cwd=ROOT,
    )
    assert done.returncode == 0, done.stdout + done.stderr
