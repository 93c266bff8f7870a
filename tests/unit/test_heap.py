"""The run's garbage-collector policy (``_heap``): the start's heap frozen, young collections
rarer, and a reload's leftovers in cycles still collected."""

from __future__ import annotations

import gc
import weakref
from collections.abc import Iterator

import pytest

from mimecast_connector import _heap


class Node:
    """A container that can be weakly referenced, to be put in a cycle."""

    def __init__(self) -> None:
        self.other: Node | None = None


@pytest.fixture(autouse=True)
def _restore_the_collector() -> Iterator[None]:
    threshold = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*threshold)


def cycle() -> weakref.ref[Node]:
    first, second = Node(), Node()
    first.other, second.other = second, first
    return weakref.ref(first)


def test_settle_freezes_what_lives_and_makes_young_collections_rarer() -> None:
    """After settle: the live heap is frozen (a full collection does not see it) and the young
    generation's threshold is YOUNG; the older ones keep theirs."""
    _, middle, old = gc.get_threshold()
    _heap.settle()
    assert gc.get_freeze_count() > 0
    assert gc.get_threshold() == (_heap.YOUNG, middle, old)
    assert gc.get_objects(generation=2) == []  # nothing left there for a full collection


def test_a_cycle_frozen_at_settle_and_let_go_is_collected_at_resettle() -> None:
    """A tenant removed by a reload may leave a cycle that was frozen at start: a collection
    cannot free it while frozen; resettle (run after every reload) does."""
    kept = cycle()
    held = [kept()]  # the tenant, alive at start
    _heap.settle()
    held.clear()  # removed by a reload
    gc.collect()
    assert kept() is not None, "the premise: a frozen cycle is out of the collector's view"
    _heap.resettle()
    assert kept() is None
    assert gc.get_freeze_count() > 0


def test_brief_makes_young_collections_rarer_for_its_length_and_puts_the_thresholds_back() -> None:
    """A one-shot run's policy: YOUNG inside, the thresholds as they were after, even when the
    run ends with an error; nothing frozen."""
    before = gc.get_threshold()
    with _heap.brief():
        assert gc.get_threshold() == (_heap.YOUNG, *before[1:])
    assert gc.get_threshold() == before
    with pytest.raises(SystemExit), _heap.brief():
        raise SystemExit(1)
    assert gc.get_threshold() == before
    assert gc.get_freeze_count() == 0
