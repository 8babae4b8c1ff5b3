from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

from flext_ctx_aspects import FlextContext, Settings, apply_settings, with_correlation
from flext_ctx_aspects._ids import generate_id, generate_span_id, uuid4_hex

HEX32 = re.compile(r"[0-9a-f]{32}")


def test_ids_are_128_bit_lowercase_hex_and_unique() -> None:
    ids = {generate_id() for _ in range(10_000)}
    assert len(ids) == 10_000
    assert all(HEX32.fullmatch(i) for i in ids)
    assert re.fullmatch(r"[0-9a-f]{16}", generate_span_id())
    assert HEX32.fullmatch(uuid4_hex())


def test_generator_is_pluggable() -> None:
    counter = iter(range(100))
    apply_settings(Settings(id_generator=lambda: f"id-{next(counter)}"))

    @with_correlation
    def body() -> str | None:
        return FlextContext.Correlation.get_correlation_id()

    assert body() == "id-0"
    with FlextContext.Correlation.new_correlation() as correlation_id:
        assert correlation_id == "id-1"
        # A correlation id that cannot be a W3C trace id still gets one (derived, stable).
        traceparent = FlextContext.Serialization.get_correlation_context()["traceparent"]
    assert re.fullmatch(r"00-[0-9a-f]{32}-[0-9a-f]{16}-01", traceparent)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_forked_children_do_not_repeat_the_parents_ids() -> None:
    code = (
        "import os, sys\n"
        "from flext_ctx_aspects._ids import generate_id\n"
        "generate_id()\n"
        "r, w = os.pipe()\n"
        "pid = os.fork()\n"
        "if pid == 0:\n"
        "    os.write(w, generate_id().encode()); os._exit(0)\n"
        "os.waitpid(pid, 0)\n"
        "child = os.read(r, 64).decode()\n"
        "print(child != generate_id())\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert out.stdout.strip() == "True"
