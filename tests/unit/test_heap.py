"""The gateway process settles its heap once started (warden.run.settle_heap)."""

from __future__ import annotations

import gc

from warden.run import settle_heap


def test_settling_freezes_what_exists_and_collects_the_young_less_often():
    thresholds = gc.get_threshold()
    try:
        settle_heap()
        assert gc.get_freeze_count() > 0
        assert gc.get_threshold()[0] > thresholds[0]
        assert gc.isenabled()  # cycles made elsewhere are still collected
    finally:
        gc.unfreeze()
        gc.set_threshold(*thresholds)
