"""`mentorflow projections rebuild`: read models rebuilt beside the serving
tables, with progress."""

from __future__ import annotations

import sys
from typing import TextIO

from tqdm import tqdm
from tqdm.contrib.logging import logging_redirect_tqdm

from service.auditor.common import NO, OK, USAGE, components_for
from service.platform.settings import Settings
from service.projection_runner import RebuildFailed, RebuildProgress


class ProgressBar:
    """Progress of one rebuild: tqdm's bar on a terminal, and in any case one
    final line naming the projection, 100%, the events and events/s (what a
    log or a script reads)."""

    def __init__(self, stream: TextIO, name: str) -> None:
        self.stream = stream
        self.name = name
        self.live = stream.isatty()
        self._bar = tqdm(
            desc=name, total=0, unit=" events", file=stream, disable=not self.live, leave=False
        )

    def update(self, progress: RebuildProgress) -> None:
        self._bar.total = progress.target
        self._bar.update(progress.position - self._bar.n)  # tqdm measures the rate

    def finish(self, progress: RebuildProgress) -> None:
        self._bar.close()
        self.stream.write(
            f"{self.name:<20} 100% {progress.position:>10,}/{progress.target:,} events"
            f"  {progress.events_per_s:>9,.0f} events/s\n"
        )
        self.stream.flush()

    def abandon(self) -> None:
        self._bar.close()


async def rebuild(settings: Settings, name: str | None = None, *, err: TextIO = sys.stderr) -> int:
    """Rebuild one read model (or all), with a progress bar on ``err``. Safe
    while the service runs: each is built beside its serving tables and
    swapped in once complete. A rebuild that fails leaves the serving tables
    as they were and makes the exit code 1, after saying where it failed."""
    async with components_for(settings) as session:
        runner = session.runner
        known = [p.name for p in runner.projections if p.rebuildable]
        names = known if name is None else [name]
        unknown = [n for n in names if n not in known]
        if unknown:
            print(
                f"mentorflow: no projection {unknown[0]!r} to rebuild; known: {', '.join(known)}",
                file=err,
            )
            return USAGE
        failed = False
        # Log lines go through tqdm while a bar is drawn, so the two never interleave.
        with logging_redirect_tqdm():
            for each in names:
                bar = ProgressBar(err, each)
                try:
                    report = await runner.rebuild(each, bar.update)
                except RebuildFailed as exc:
                    bar.abandon()
                    print(f"mentorflow: {exc}", file=err)
                    failed = True
                    continue
                bar.finish(RebuildProgress(each, report.events, report.events, report.seconds))
    return NO if failed else OK
