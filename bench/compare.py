"""Does a change make the HTTP path faster? `bench/http.py` from two checkouts, in turn.

    python bench/compare.py [BASE] [--pairs 5] [-- http.py arguments]

BASE is a git revision (default HEAD), checked out in a temporary worktree;
the other side is this working tree, uncommitted changes included. Each pair
runs `bench/http.py --rounds 1 --seconds 6` (or the arguments given after
`--`) once from each side, the side that goes first alternating from pair to
pair, so that a machine growing slower or faster during the comparison
weighs on both alike. Each side's server and bench come from its own
checkout: the bench runs with the checkout as its working directory, which
Python puts first on the path.

It prints every run and the medians of each side: requests/s and p99 against
the bare handler of the same run, and the server's CPU per request against the
bare handler's. A single run of `bench/http.py` on the 2-core VM has given
anything from 0.51x to 0.74x for the same code: compare medians of five
pairs or more, and run nothing else meanwhile (docs/performance.md, "How to
measure a change").
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_BENCH_ARGS = ["--rounds", "1", "--seconds", "6"]


@dataclass(frozen=True)
class Run:
    """One run of bench/http.py: the service against the bare handler."""

    side: str
    requests: float  # the service's requests/s over the bare handler's
    p99: float  # the service's p99 over the bare handler's
    cpu: float  # the service's CPU per request over the bare handler's
    cpu_ms: float  # the service's CPU per request, ms


def parse(side: str, output: str) -> Run:
    """The figures of bench/http.py's summary table (its `mentorflow` and
    `baseline` rows: subject, req/s, ratio, p50, p99, CPU ms/req, ...)."""
    rows: dict[str, list[str]] = {}
    for line in output.splitlines():
        fields = line.split()
        if len(fields) >= 6 and fields[0] in ("mentorflow", "baseline") and fields[2].endswith("x"):
            rows[fields[0]] = fields
    if set(rows) != {"mentorflow", "baseline"}:
        raise ValueError(f"no summary table in bench/http.py's output:\n{output[-2000:]}")
    service, bare = rows["mentorflow"], rows["baseline"]
    return Run(
        side=side,
        requests=float(service[1]) / float(bare[1]),
        p99=float(service[4]) / float(bare[4]),
        cpu=float(service[5]) / float(bare[5]),
        cpu_ms=float(service[5]),
    )


def run_bench(checkout: Path, side: str, bench_args: list[str]) -> Run:
    completed = subprocess.run(
        [sys.executable, "bench/http.py", *bench_args],
        cwd=checkout,
        capture_output=True,
        text=True,
        check=False,
    )
    if completed.returncode != 0:
        raise SystemExit(f"bench/http.py failed on {side}:\n{completed.stderr[-2000:]}")
    return parse(side, completed.stdout)


def order(pair: int) -> tuple[str, str]:
    """Which side goes first in a pair: each in turn."""
    return ("base", "change") if pair % 2 == 0 else ("change", "base")


def medians(runs: list[Run], side: str) -> str:
    mine = [r for r in runs if r.side == side]
    requests = statistics.median(r.requests for r in mine)
    p99 = statistics.median(r.p99 for r in mine)
    cpu, cpu_ms = statistics.median(r.cpu for r in mine), statistics.median(r.cpu_ms for r in mine)
    return (
        f"{side:<7} medians of {len(mine)}: req/s {requests:.2f}x  p99 {p99:.2f}x"
        f"  CPU/request {cpu:.2f}x ({cpu_ms:.2f} ms)"
    )


def compare(base: str, pairs: int, bench_args: list[str]) -> None:
    with tempfile.TemporaryDirectory(prefix="mentorflow-compare-") as parent:
        worktree = Path(parent) / "base"
        subprocess.run(
            ["git", "worktree", "add", "--detach", "-q", str(worktree), base], cwd=ROOT, check=True
        )
        try:
            checkouts = {"base": worktree, "change": ROOT}
            runs: list[Run] = []
            for pair in range(pairs):
                for side in order(pair):
                    run = run_bench(checkouts[side], side, bench_args)
                    runs.append(run)
                    print(
                        f"pair {pair + 1} {side:<7} req/s {run.requests:.2f}x  p99 {run.p99:.2f}x"
                        f"  CPU/request {run.cpu:.2f}x ({run.cpu_ms:.2f} ms)",
                        flush=True,
                    )
        finally:
            subprocess.run(
                ["git", "worktree", "remove", "--force", str(worktree)], cwd=ROOT, check=False
            )
    print()
    print(medians(runs, "base"))
    print(medians(runs, "change"))


if __name__ == "__main__":
    argv = sys.argv[1:]
    split = argv.index("--") if "--" in argv else len(argv)
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("base", nargs="?", default="HEAD", help="git revision (default HEAD)")
    parser.add_argument("--pairs", type=int, default=5)
    args = parser.parse_args(argv[:split])
    compare(args.base, args.pairs, argv[split + 1 :] or DEFAULT_BENCH_ARGS)
