"""The library never draws from the shared ``random`` instance.

Found by the transparency harness (docs/transparency.md): more-itertools' seeded tests
(``random.seed(0)`` then ``sample``) gave other results once instrumented, because every
correlation id advanced the shared generator. The oracle is the same seeded sequence with no
aspect in between.
"""

from __future__ import annotations

import os
import random
import sys

import pytest

from flext_ctx_aspects import FlextContext, timed, with_correlation
from flext_ctx_aspects._ids import generate_id, generate_span_id, rng
from flext_ctx_aspects.propagation.w3c import new_parent_id


@with_correlation
@timed
def draw() -> float:
    return random.random()


def test_aspects_and_ids_leave_a_seeded_sequence_unchanged() -> None:
    random.seed(1234)
    expected = [random.random() for _ in range(50)]
    random.seed(1234)
    got = []
    for _ in range(50):
        generate_id()
        generate_span_id()
        new_parent_id()
        with FlextContext.Correlation.new_correlation():
            got.append(draw())
    assert got == expected


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_a_forked_child_draws_other_ids_than_its_parent() -> None:
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: report its next id and leave without running pytest's teardown
        os.write(write, generate_id().encode())
        os._exit(0)
    os.close(write)
    child_id = os.read(read, 64).decode()
    os.close(read)
    os.waitpid(pid, 0)
    assert child_id != generate_id()
    assert len(child_id) == 32


def test_the_private_generator_is_not_the_shared_one() -> None:
    assert rng is not random._inst  # type: ignore[attr-defined]
    assert sys.modules["random"].getrandbits.__self__ is not rng
