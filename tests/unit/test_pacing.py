"""The ticks paced subscriptions read on, and the phases of the live
projections: each reads at its own point of the interval, the webhook
outbox first."""

from __future__ import annotations

import math

from hypothesis import given
from hypothesis import strategies as st

from projections import all_projections
from service.projection_runner.running import reading_phase
from service.store.subscriptions import next_tick
from service.webhooks.outbox import WebhookOutbox


@given(
    earliest=st.floats(0, 1e6, allow_nan=False),
    interval=st.floats(0.01, 10, allow_nan=False),
    share=st.floats(0, 1, exclude_max=True),
)
def test_the_next_tick_is_the_first_of_the_phase_not_before_earliest(
    earliest: float, interval: float, share: float
) -> None:
    phase = share * interval
    tick = next_tick(earliest, interval, phase)
    slack = 1e-9 * max(1.0, earliest)
    assert tick >= earliest - slack
    assert tick - interval < earliest + slack  # the first such tick
    ticks = (tick - phase) / interval
    assert math.isclose(ticks, round(ticks), abs_tol=1e-6)  # on the phase


def test_each_projection_reads_at_its_own_point_of_the_interval() -> None:
    names = [p.name for p in (WebhookOutbox(), *all_projections())]
    phases = [reading_phase(names, name, 0.1) for name in names]
    assert phases[0] == 0.0
    assert len(set(phases)) == len(names)
    assert all(0 <= phase < 0.1 for phase in phases)
    assert phases == sorted(phases)  # in the runner's order
