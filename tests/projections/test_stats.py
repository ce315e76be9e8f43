"""Phase statistics on a small dataset whose figures are known by hand."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from domain import Relationship
from domain.samples import Clock, walk_to
from service.projection_runner import ProjectionRunner
from service.relationships.read_models import ReadModels
from service.relationships.repository import RelationshipRepository
from service.store.eventstore import EventStore
from tests.projections.support import decoder, save_all

pytestmark = pytest.mark.db

HOUR = 3600.0
START = datetime(2025, 1, 6, 9, 0, tzinfo=UTC)


def clock(hours: int) -> Clock:
    return Clock(START, timedelta(hours=hours))


def dataset() -> list[Relationship]:
    """Events one clock step apart. A full walk stays 2 steps in reflection,
    3 in identification, 4 in establishment, 2 in cultivation, 2 in refinement;
    ``f`` refines after 3 steps and is back in establishment."""
    a, b, c = (walk_to("concluded", clock=clock(h)) for h in (1, 2, 4))
    d_clock = clock(1)
    d = walk_to("cultivation", clock=d_clock)
    d.record("relationship.paused", {"reason": "leave"}, d_clock.envelope())
    e_clock = clock(1)
    e = walk_to("identification", clock=e_clock)  # reflection 2 h, identification 3 h
    e.record("relationship.withdrawn", {"reason_code": "left"}, e_clock.envelope())
    f_clock = clock(1)
    f = walk_to("refinement", clock=f_clock)
    f.record(
        "reflection.recorded", {"author_role": "mentee", "kind": "interim"}, f_clock.envelope()
    )
    f.record("relationship.refined", None, f_clock.envelope())  # refinement 2 h, then open
    return [a, b, c, d, e, f]


async def test_phase_statistics_of_a_known_dataset(
    store: EventStore, repository: RelationshipRepository, runner: ProjectionRunner
) -> None:
    last = await save_all(repository, dataset())
    stats = await ReadModels(store, decoder(repository), runner).phase_stats(min_position=last)

    assert stats["relationships"] == 6 and stats["projected_through"] == last
    assert {p: v["count"] for p, v in stats["phases"].items()} == {
        "reflection": 0,
        "identification": 0,
        "establishment": 1,
        "cultivation": 1,
        "refinement": 0,
        "concluded": 4,
    }
    assert stats["phases"]["cultivation"]["paused"] == 1
    # completed stays, in hours: reflection 2,4,8,2,2,2; identification 3,6,12,3,3,3;
    # establishment 4,8,16,4,4; cultivation 2,4,8,2; refinement 2,4,8,3
    # (percentile_cont: position p * (n - 1), interpolated linearly)
    expected = {
        "reflection": (6, 0, 2.0, 6.0),
        "identification": (6, 0, 3.0, 9.0),
        "establishment": (5, 1, 4.0, 12.8),
        "cultivation": (4, 1, 3.0, 6.8),
        "refinement": (4, 0, 3.5, 6.8),
    }
    for phase, (completed, still_open, median, p90) in expected.items():
        assert stats["time_in_phase"][phase] == {
            "completed_stays": completed,
            "open_stays": still_open,
            "median_seconds": median * HOUR,
            "p90_seconds": p90 * HOUR,
        }, phase
    assert stats["time_unit"] == "seconds" and "concluded" not in stats["time_in_phase"]
    assert [(f["phase"], f["reached"]) for f in stats["funnel"]] == [
        ("reflection", 6),
        ("identification", 6),
        ("establishment", 5),
        ("cultivation", 5),
        ("refinement", 4),
        ("concluded", 4),
    ]
    assert stats["funnel"][2]["share"] == round(5 / 6, 4)
    assert stats["outcomes"] == {"goals_achieved": 3, "withdrawn": 1}


async def test_empty_statistics_list_every_phase(
    store: EventStore, repository: RelationshipRepository
) -> None:
    stats = await ReadModels(store, decoder(repository)).phase_stats()
    assert stats["relationships"] == 0 and stats["outcomes"] == {}
    assert all(v == {"count": 0, "paused": 0} for v in stats["phases"].values())
    assert all(f["reached"] == 0 and f["share"] is None for f in stats["funnel"])
