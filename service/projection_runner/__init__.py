"""Running the projections: one worker per projection across all processes.

For each projection, every process runs a worker task (under the process's
:class:`~service.platform.supervisor.Supervisor`) that competes for a PostgreSQL
advisory lock on a dedicated connection. The winner follows the global log
from the projection's checkpoint and commits, per batch, the projection's
rows and its checkpoint in one transaction *on that same connection*: if the
holder dies, its connection (and so its lock and any uncommitted batch) goes
with it, and another process takes over within ``takeover_interval``. No
write can ever come from a worker that lost the lock.

Checkpoints are tracking records of the event store, moved forward with
``EventStore.advance_tracking``. Checkpoints only move forward, so each
projection has a *generation* (table ``projection_state``, migrations 0010
and 0040) and its checkpoint is named ``projection.<name>.<generation>``.

A rebuild is blue/green: it takes a new generation number, builds that
generation's tables in a schema of its own beside the serving ones (same
table names, found first on the rebuild connection's ``search_path``),
replays the log into them, and once it has caught up with the log it swaps
them in: one transaction locks the projection's state row (every worker
batch reads it ``FOR SHARE`` first, so the swap waits for a batch in flight
and fences off the next), applies the last events, drops the serving tables,
moves the new ones into place, and makes their generation the serving one.
The running worker sees the new generation and goes on from its checkpoint.
Until the swap, reads are served from the old tables, which the running
worker keeps up to date; a rebuild that fails (or is stopped) drops its
schema and leaves them as they were. The webhook outbox is history, not a
view: it is never rebuilt (a rebuild must never send a webhook again).

When a handler fails on a batch, the worker counts the failure and ends;
the supervisor starts it again after a back-off, and the new run commits the
failed batch's events one at a time to find the event that fails
(committing those before it). A failing event is logged with the projection
and the position, counted, and recorded in ``projection_state`` (so
``/readyz`` in any process can name it), and the run ends again: the event is
retried after each back-off. The record is cleared when the projection
commits that position. Other projections go on meanwhile.

A running worker reads the log through the store's subscription
(LISTEN/NOTIFY, polling as the fallback); a rebuild reads it in whole batches
up to the last position it was asked for. Either way a reader task reads and
prepares (decodes, formats) events while the worker writes the previous
batch, so reading, preparing and writing overlap.

Lag (last position - checkpoint) is exported per projection as Prometheus
gauges; ``wait_until_projected`` gives readers read-your-writes.

The package is split by job: :mod:`~service.projection_runner.leadership`
(advisory locks: who runs a projection), :mod:`~service.projection_runner.running`
(the catch-up loop, batches, failure isolation),
:mod:`~service.projection_runner.rebuild` (blue/green),
:mod:`~service.projection_runner.monitoring` and
:mod:`~service.projection_runner.metrics` (checkpoints, lag, Prometheus), and
:mod:`~service.projection_runner.runner` (the :class:`ProjectionRunner` that
puts them together).
"""

from service.projection_runner.metrics import ProjectionMetrics
from service.projection_runner.runner import ProjectionRunner
from service.projection_runner.state import (
    ProjectionFailure,
    RebuildFailed,
    RebuildProgress,
    RebuildReport,
    projected_event,
    shadow_schema,
    tracking_name,
)

__all__ = [
    "ProjectionFailure",
    "ProjectionMetrics",
    "ProjectionRunner",
    "RebuildFailed",
    "RebuildProgress",
    "RebuildReport",
    "projected_event",
    "shadow_schema",
    "tracking_name",
]
