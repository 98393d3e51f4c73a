"""A client joining while updates are queued must not hide those updates from the sessions already following."""

from __future__ import annotations

from pathlib import Path

from prometheus_client import CollectorRegistry

from libcalico.datastore.sqlite import SqliteBackend
from libcalico.runtime.health import HealthAggregator
from libcalico.syncer import SyncStatus, Update, UpdateType
from services.typha.filtering import no_shaping
from services.typha.metrics import TyphaMetrics
from services.typha.pipeline import Pipeline
from services.typha.snapcache import Breadcrumb


class Follower:
    """A following session reduced to what the publisher sees: it records every breadcrumb it is handed."""

    def __init__(self, position: Breadcrumb) -> None:
        self.position = position
        self.taken: list[int] = []

    def take(self, crumb: Breadcrumb) -> bool:
        assert crumb is self.position.next, "the publisher skipped a breadcrumb"
        self.taken.append(crumb.seq)
        self.position = crumb
        return True


def _update(i: int) -> Update:
    key = f"/calico/resources/v3/projectcalico.org/profiles/p{i}"
    value = {"apiVersion": "projectcalico.org/v3", "kind": "Profile", "metadata": {"name": f"p{i}"}, "spec": {}}
    return Update(key, value, i + 1, UpdateType.NEW)


def test_joining_publishes_queued_updates_to_followers_first(tmp_path: Path) -> None:
    pipeline = Pipeline("felix", SqliteBackend(str(tmp_path / "calico.db")), no_shaping,
                        metrics=TyphaMetrics.create(CollectorRegistry()),
                        reporter=HealthAggregator().register("cache-felix"), batch_interval=0.01)
    first = pipeline.join(0.0)
    follower = Follower(first)
    pipeline.follow(follower)
    pipeline.on_status(SyncStatus.RESYNC_IN_PROGRESS)
    pipeline.on_updates([_update(i) for i in range(3)])
    pipeline.on_status(SyncStatus.IN_SYNC)

    joined = pipeline.join(1.0)  # a new client arrives before the publisher's next turn

    assert follower.taken == [joined.seq], "the queued breadcrumb never reached the follower"
    assert follower.position is joined
    assert joined.status is SyncStatus.IN_SYNC
