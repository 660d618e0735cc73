"""PostgreSQL retention figures (issue 15): disk per stored event (table, TOAST and indexes, after decisions are
recorded) and the rate at which the bounded-batch prune deletes, extrapolated to 30 days of 100 events/s.
Not a timed test: the figures go to docs/deployment.md.

    python bench/postgres_retention.py [--events 5000] [--postgres postgresql://postgres@127.0.0.1:5432/postgres]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.e2e import make_event
from bench.procs import forget_deployment, open_deployment
from engine.store.base import IncomingEvent, NewJob

RATE, DAYS = 100, 30


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=5000)
    parser.add_argument("--postgres", default="postgresql://postgres@127.0.0.1:5432/postgres")
    args = parser.parse_args()
    group = f"bench-retention-{uuid.uuid4().hex[:8]}"
    now = time.time()
    with tempfile.TemporaryDirectory() as tmp:
        store = open_deployment(args.postgres, group, Path(tmp))
        try:
            jtis = []
            for i in range(args.events):
                jti, body = make_event()
                at = now - args.events - 10 + i  # all older than `now`: the prune below removes every one
                store.ingest(IncomingEvent(jti=jti, webhook="asgardeo", iat_ms=at * 1000, received_at=at,
                                           uris=("https://schemas.identity.wso2.org/events/login",), body=body),
                             86400)
                jtis.append(jti)
            decisions = [{"rule": "brute-force-user", "matched": True, "actions": 1}]
            for start in range(0, len(jtis), 100):  # one matching rule with one action per ten events
                store.complete_events(
                    [(jti, decisions, [NewJob(f"{jti}:r:0", "slack", "slack", {"text": "x" * 200}, rule="r", jti=jti)]
                      if n % 10 == 0 else []) for n, jti in enumerate(jtis[start:start + 100])], now)
            with store._conn("measuring") as conn:
                conn.execute("VACUUM ANALYZE events")
                conn.execute("VACUUM ANALYZE jobs")
                sizes = conn.execute("SELECT pg_total_relation_size('events'), pg_total_relation_size('jobs')"
                                     ).fetchone()
            stored = sum(store.stats().events.values())
            started = time.perf_counter()
            removed = store.prune(now, retention=0, dedup_window=0)
            prune_seconds = time.perf_counter() - started
        finally:
            store.close()
            forget_deployment(args.postgres, group, Path(tmp))
    per_event = (sizes[0] + sizes[1]) / args.events
    total = RATE * 86400 * DAYS
    rate = removed / prune_seconds
    print(f"postgres retention: {args.events} events of ~{len(make_event()[1])} bytes stored ({stored} counted), "
          f"one job per ten events")
    print(f"  disk per event (events + jobs, with indexes and TOAST): {per_event:,.0f} bytes")
    print(f"  {DAYS} days of {RATE} events/s = {total:,} events: about {per_event * total / 1e9:,.0f} GB")
    print(f"  prune: {removed} events deleted in {prune_seconds:.2f} s ({rate:,.0f} events/s, batches of 5,000); "
          f"the hourly prune of {RATE * 3600:,} events takes about {RATE * 3600 / rate:.0f} s")
    return 0 if stored == removed == args.events else 1


if __name__ == "__main__":
    sys.exit(main())
