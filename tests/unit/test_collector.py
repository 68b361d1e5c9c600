"""The daemon's cycle collector once set up (repfs.heap.tame_collector): what was alive
is out of its reach, and the youngest generation is collected less often."""

from __future__ import annotations

import subprocess
import sys

PROBE = """
import gc
from repfs.heap import GC_YOUNG_THRESHOLD, tame_collector
kept = [[] for _ in range(1000)]
before = gc.get_freeze_count()
tame_collector()
print(before, gc.get_freeze_count(), gc.get_threshold()[0], GC_YOUNG_THRESHOLD)
"""


def test_the_objects_alive_at_set_up_are_frozen_and_young_collections_are_rarer() -> None:
    # a child process: freezing is for the life of the process, not for the test run
    out = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, check=True, timeout=60)
    before, after, threshold, wanted = map(int, out.stdout.split())
    assert before == 0
    assert after >= 1000  # the lists above among them
    assert threshold == wanted > 700  # Python's default is 700
