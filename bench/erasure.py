"""What sealing erasable fields under per-relationship data keys costs, per
event, next to the previous release's codecs.

    python bench/erasure.py [--events 1000] [--repeat 7]

Encodes and decodes the events of one long relationship (meetings with notes,
action items, goal progress, feedback) with: plain JSON, the previous
release's whole-payload AES-GCM, and this release's field sealing (reading
with the key, and after the key was destroyed). Best of ``--repeat`` runs,
as µs per event and as a ratio to plain JSON.
"""

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import cast

sys.path[0] = str(Path(__file__).resolve().parents[1])  # bench/http.py would shadow http

from domain import Relationship, create_cipher_key, make_mapper  # noqa: E402
from domain.samples import long_history  # noqa: E402
from service.relationships.codec import EventCodec  # noqa: E402


def best_of(repeat: int, function: Callable[[], object]) -> float:
    best = float("inf")
    for _ in range(repeat):
        started = time.perf_counter()
        function()
        best = min(best, time.perf_counter() - started)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args()
    relationship = long_history(args.events)
    events = [cast(Relationship.Event, e) for e in relationship.collect_events()]
    count = len(events)
    key = create_cipher_key()
    plain = make_mapper()
    previous = make_mapper(cipher_key=key)
    codec = EventCodec(key)
    wrapped = codec.new_data_key(relationship.id)
    data_key = codec.data_key(relationship.id, wrapped)

    rows: list[tuple[str, float, float]] = []
    stored_plain = [plain.to_stored_event(e) for e in events]
    stored_previous = [previous.to_stored_event(e) for e in events]
    stored_sealed = [codec.encode(e, data_key) for e in events]
    cases: list[tuple[str, Callable[[], object], Callable[[], object]]] = [
        (
            "plain JSON (no cipher key)",
            lambda: [plain.to_stored_event(e) for e in events],
            lambda: [plain.to_domain_event(s) for s in stored_plain],
        ),
        (
            "previous release: whole payload AES-GCM",
            lambda: [previous.to_stored_event(e) for e in events],
            lambda: [previous.to_domain_event(s) for s in stored_previous],
        ),
        (
            "this release: erasable fields sealed",
            lambda: [codec.encode(e, data_key) for e in events],
            lambda: [codec.decode(s, wrapped) for s in stored_sealed],
        ),
        (
            "this release: after erasure (no key)",
            lambda: [codec.encode(e, None) for e in events],
            lambda: [codec.decode(s, None) for s in stored_sealed],
        ),
        (
            "this release: previous release's payloads",
            lambda: None,
            lambda: [codec.decode(s, None) for s in stored_previous],
        ),
    ]
    for name, encode, decode in cases:
        rows.append(
            (name, best_of(args.repeat, encode) / count, best_of(args.repeat, decode) / count)
        )
    base_encode, base_decode = rows[0][1], rows[0][2]
    size = {
        "plain": sum(len(s.state) for s in stored_plain) / count,
        "previous": sum(len(s.state) for s in stored_previous) / count,
        "sealed": sum(len(s.state) for s in stored_sealed) / count,
    }
    print(
        f"{count} events; mean payload bytes: " + ", ".join(f"{k} {v:.0f}" for k, v in size.items())
    )
    print(f"{'codec':<45} {'encode µs':>10} {'x':>6} {'decode µs':>10} {'x':>6}")
    for name, encode_s, decode_s in rows:
        encode_cell = f"{encode_s * 1e6:10.1f} {encode_s / base_encode:6.2f}"
        if name.endswith("payloads"):
            encode_cell = f"{'-':>10} {'-':>6}"
        print(f"{name:<45} {encode_cell} {decode_s * 1e6:10.1f} {decode_s / base_decode:6.2f}")


if __name__ == "__main__":
    main()
