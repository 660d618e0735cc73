"""Benchmark (not a test): events/s through a threshold rule with 100,000 distinct group keys, and the
store's state size before and after the windows expire (it must shrink back). Then, on SQLite and Redis:

- new_value: bytes of store per (group, value) pair at 1,000,000 pairs (10,000 groups x 100 values; SQLite
  file growth, Redis used_memory growth), and µs per new_value check through the store's real operation.
  The million pairs are bulk-loaded in exactly the layout the operation writes (one transaction / a
  pipeline), because a million single checks take minutes on the shared 2-core machine; the checks that
  are timed go through new_value_seen() itself and land in the same tables.
- absence: 100,000 timers expiring at once, started by stored trigger events: the time for the periodic tick
  to fire them all (claim, render, enqueue each firing's job, record it on its trigger event, forget the
  timer) and a check that each fired exactly once and was recorded.

    python bench/stateful.py [--groups N] [--store sqlite|redis] [--redis-url URL]
                             [--pairs N] [--timers N] [--detections-only]

Every event opens a new group (the worst case: a flood of random usernames), under the default cap.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from engine.match.stateful.decide import Observation, evaluate
from engine.match.stateful.specs import StatefulSpec, Threshold
from engine.store.state import NewValueLimits

T0 = 1_700_000_000.0
SPEC = StatefulSpec(threshold=Threshold(count=5, within=600, group_by=("claims.username",)))


def open_store(kind: str, folder: Path, redis_url: str) -> Any:
    if kind == "sqlite":
        from engine.store.sqlite import SQLiteStore

        return SQLiteStore(folder / "bench.db")
    from engine.store.redis import RedisStore

    return RedisStore(redis_url, group=f"bench-stateful-{uuid.uuid4().hex[:8]}", spool_dir=folder / "spool")


def run(store: Any, groups: int) -> dict[str, float]:
    started, cpu = time.perf_counter(), time.process_time()
    for i in range(groups):
        event = Observation(jti=f"e{i}", time=T0 + i * 0.001, group=(f"user-{i}",), item={"n": i})
        evaluate(store, "brute-force-user", SPEC, event, T0 + i * 0.001)
    elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu
    size_full = store.state_size()
    expired = T0 + groups * 0.001 + SPEC.threshold.within + SPEC.threshold.late + 1
    started = time.perf_counter()
    store.prune_state(expired)
    return {"events": groups, "events_per_s": groups / elapsed, "cpu_s": cpu, "size_full": size_full,
            "prune_s": time.perf_counter() - started, "size_after": store.state_size()}


VALUES_PER_GROUP = 100
NV_LIMITS = NewValueLimits(lookback=90 * 86400.0, learn_for=0.0, max_values=1000, max_groups=10**7)


def _sqlite_bytes(store: Any) -> int:
    return store._read("PRAGMA page_count")[0][0] * store._read("PRAGMA page_size")[0][0]


def _bulk_pairs(store: Any, kind: str, groups: int) -> None:
    """groups x VALUES_PER_GROUP pairs in the layout new_value_seen() writes (see the module docstring)."""
    until = T0 + NV_LIMITS.lookback
    if kind == "sqlite":
        with store._tx() as conn:
            for g in range(groups):
                gid = conn.execute("INSERT INTO state_nv_groups (rule_id, group_key, since, last, expires_at) "
                                   "VALUES (?, ?, ?, ?, ?)", ("new-country", f'["user-{g}@example.com"]', T0, T0,
                                                              until)).lastrowid
                conn.executemany("INSERT INTO state_nv_values VALUES (?, ?, ?)",
                                 [(gid, f"v{v:02d}", until) for v in range(VALUES_PER_GROUP)])
        return
    p = store.prefix
    for start in range(0, groups, 500):
        with store.redis.pipeline(transaction=False) as pipe:
            for g in range(start, min(groups, start + 500)):
                key = f'["user-{g}@example.com"]'
                pipe.hset(f"{p}st:ng:new-country:{key}", mapping={"since": T0, "last": T0})
                pipe.zadd(f"{p}st:nv:new-country:{key}", {f"v{v:02d}": until for v in range(VALUES_PER_GROUP)})
                pipe.zadd(f"{p}st:nx:new-country", {key: until})
            pipe.execute()


def new_value_figures(store: Any, kind: str, pairs: int) -> dict[str, float]:
    groups = pairs // VALUES_PER_GROUP
    before = _sqlite_bytes(store) if kind == "sqlite" else store.redis.info("memory")["used_memory"]
    started = time.perf_counter()
    _bulk_pairs(store, kind, groups)
    load_s = time.perf_counter() - started
    after = _sqlite_bytes(store) if kind == "sqlite" else store.redis.info("memory")["used_memory"]
    checks = 5_000
    started = time.perf_counter()
    for i in range(checks):  # half known values of existing groups, half new values
        value = f"v{i % VALUES_PER_GROUP:02d}" if i % 2 else f"new-{i}"
        store.new_value_seen("new-country", f'["user-{i % groups}@example.com"]', value, f"j{i}", T0 + 1,
                             NV_LIMITS, T0 + 1)
    check_us = (time.perf_counter() - started) / checks * 1e6
    return {"pairs": groups * VALUES_PER_GROUP, "bytes_per_pair": (after - before) / (groups * VALUES_PER_GROUP),
            "load_s": load_s, "check_us": check_us}


TIMER_RULE = """
rules:
  - id: registered-never-signed-in
    event: registration.registrationSuccess
    absence: {expect: {event: login.loginSuccess}, group_by: [user_id], within: 1h}
    actions: [{log: {message: "{{ username }} registered {{ within }} ago and never signed in"}}]
"""


def timer_figures(store: Any, folder: Path, timers: int) -> dict[str, float]:
    """`timers` absence timers started by real trigger events, all due at once, fired by one tick."""
    from engine import catalog
    from engine.match import load_ruleset
    from engine.match.stateful.evaluator import StatefulRules
    from engine.store.base import StoredEvent
    from engine.verify.envelope import envelope_from_claims

    (folder / "timers.yaml").write_text(TIMER_RULE)
    rules = StatefulRules(load_ruleset([folder / "timers.yaml"], destinations={}), store)
    sample = catalog.entries()["registration.registrationSuccess"].sample()
    body = next(iter(sample["events"].values()))
    started = time.perf_counter()
    for i in range(timers):
        body["user"]["id"], sample["jti"], sample["iat"] = f"user-{i}", f"reg-{i}", int(T0 * 1000)
        env = envelope_from_claims(sample)
        decisions = [d.to_json() for d in rules.evaluate(env, env.uris[0], "asgardeo", now=T0)]
        store.import_event(StoredEvent(env.jti, "asgardeo", T0 * 1000, T0, tuple(env.uris),
                                       json.dumps(sample).encode(), "processed", decisions, T0))
    start_s = time.perf_counter() - started
    started, cpu = time.perf_counter(), time.process_time()
    fired = rules.tick(T0 + 3600)
    fire_s, cpu = time.perf_counter() - started, time.process_time() - cpu
    again = rules.tick(T0 + 7200)
    keys = {job.key for job in store.list_jobs(limit=timers + 10)} if hasattr(store, "list_jobs") else set()
    recorded = sum(1 for i in range(0, timers, max(1, timers // 100))
                   if any(d.get("fired_by") == "timer" for d in store.get_event(f"reg-{i}").decisions))
    return {"timers": timers, "start_s": start_s, "fire_s": fire_s, "fire_cpu_s": cpu, "fired": fired,
            "again": again, "jobs": len(keys), "recorded": recorded == len(range(0, timers, max(1, timers // 100)))}


def detections(kind: str, folder: Path, redis_url: str, pairs: int, timers: int) -> bool:
    store = open_store(kind, folder, redis_url)
    try:
        nv = new_value_figures(store, kind, pairs) if pairs else None
        if nv:
            print(f"new_value ({kind}): {nv['pairs']:,} (group, value) pairs: {nv['bytes_per_pair']:.0f} bytes per "
                  f"pair ({'file growth' if kind == 'sqlite' else 'used_memory growth'}; bulk-loaded in "
                  f"{nv['load_s']:.1f} s); "
                  f"{nv['check_us']:.0f} µs per new_value check through the store at that size")
        tf = timer_figures(store, folder, timers)
        print(f"absence ({kind}): {tf['timers']:,} timers expiring at once: fired in {tf['fire_s']:.1f} s "
              f"({tf['timers'] / tf['fire_s']:,.0f} timers/s, {tf['fire_cpu_s']:.1f} s CPU; starting them took "
              f"{tf['start_s']:.1f} s); fired {tf['fired']:,}, {tf['jobs']:,} distinct jobs, "
              f"{tf['again']} fired again on the next tick")
        return tf["fired"] == tf["timers"] == tf["jobs"] and tf["again"] == 0 and tf["recorded"]
    finally:
        if kind == "redis":
            keys = list(store.redis.scan_iter(match=f"{store.prefix}*", count=5000))
            for start in range(0, len(keys), 5000):
                store.redis.delete(*keys[start:start + 5000])
        store.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--groups", type=int, default=100_000)
    parser.add_argument("--store", choices=("sqlite", "redis"), default="sqlite")
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/15")
    parser.add_argument("--pairs", type=int, default=1_000_000, help="new_value (group, value) pairs")
    parser.add_argument("--timers", type=int, default=100_000, help="absence timers expiring at once")
    parser.add_argument("--detections-only", action="store_true", help="skip the threshold figures")
    args = parser.parse_args(argv)
    ok = True
    for kind in ("sqlite", "redis"):
        with tempfile.TemporaryDirectory() as folder:
            try:
                ok = detections(kind, Path(folder), args.redis_url, args.pairs, args.timers) and ok
            except Exception as exc:
                if kind == "sqlite":
                    raise
                print(f"new_value / absence (redis): skipped: {type(exc).__name__}: {exc}")
    if args.detections_only:
        return 0 if ok else 1
    with tempfile.TemporaryDirectory() as folder:
        store = open_store(args.store, Path(folder), args.redis_url)
        try:
            figures = run(store, args.groups)
        finally:
            store.close()
    print(f"stateful ({args.store}): {figures['events']:,} events, one new group each: "
          f"{figures['events_per_s']:,.0f} events/s; state {figures['size_full']:,} rows/keys while the windows "
          f"are open, {figures['size_after']:,} after they expire (pruned in {figures['prune_s']:.2f} s)")
    print(f"  (wall clock; this process used {figures['cpu_s']:.1f} s CPU; 1-minute load average of the machine: "
          f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs)")
    return 0 if figures["size_after"] == 0 and ok else 1


if __name__ == "__main__":
    sys.exit(main())
