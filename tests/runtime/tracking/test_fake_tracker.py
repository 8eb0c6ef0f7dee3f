"""The fake tracker keeps the Tracker contract and its scripted faults happen when scripted."""

import numpy as np
import pytest

from runtime.clock import FakeClock
from runtime.errors import ObservationError
from runtime.tracking.base import Tracker
from runtime.tracking.fake import FakeTracker

IMG = np.zeros((48, 64, 3), np.uint8)


def test_box_becomes_the_mask_and_loss_is_scripted():
    clock = FakeClock()
    t = FakeTracker(latency_s=0.05, lost_after=2, sleep=clock.advance)
    assert isinstance(t, Tracker)
    res = t.init(IMG, [10, 5, 20, 15])
    assert res.mask.sum() == 100 and res.mask[5:15, 10:20].all() and not res.lost
    assert [t.track(IMG).lost for _ in range(4)] == [False, False, True, True]
    assert clock.now() == pytest.approx(0.25)  # init + 4 tracks, 50 ms each (fake time)
    assert t.calls == {"init": 1, "track": 4, "reset": 0}


def test_contract_errors():
    t = FakeTracker()
    with pytest.raises(RuntimeError, match="before init"):
        t.track(IMG)
    with pytest.raises(ObservationError, match="bad box"):
        t.init(IMG, [5, 5, 1, 1])
    res = t.init(IMG, mask=np.zeros((48, 64)))
    assert res.lost and res.info["reason"] == "empty_init"
    assert t.track(IMG).lost
    with pytest.raises(ObservationError, match="initialised on 64x48"):
        t.track(np.zeros((10, 10, 3), np.uint8))
