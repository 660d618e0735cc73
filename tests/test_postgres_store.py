"""What the contract suite cannot say about the PostgreSQL store: schema migrations from every older version,
job leases by the database's clock, NOTIFY wake-ups across processes, pooled connections handed out without a
round trip yet replaced when the server ended them, deployments isolated by schema, the password never shown,
hostile names, and bounded retention batches."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import psycopg
import pytest

from engine.config.settings import DeliveryConfig, load_config
from engine.deliver.worker import DeliveryWorker
from engine.metrics import Metrics
from engine.runtime import Current
from engine.errors import ConfigError, StoreError
from engine.store import open_store
from engine.store import postgres as postgres_module
from engine.store.base import ACCEPTED, DUPLICATE, NewJob
from engine.store.postgres import PostgresStore
from engine.store.postgres_schema import MIGRATIONS
from engine.secrets import Secret
from tests.conftest import ROOT, basic_config, free_port
from tests.peers import HttpPeer, http_peer  # noqa: F401 - fixture
from tests.pgutil import drop_group, open_postgres_store, unique_group
from tests.test_store_contract import LEASE, T0, WINDOW, event
from tests.test_worker import actions_for

pytestmark = pytest.mark.postgres


def apply_migrations(store: PostgresStore, upto: int) -> None:
    """Rebuild the store's schema as an idhooks of schema version `upto` left it."""
    with store._tx("test") as cur:
        cur.execute(f'DROP SCHEMA "{store.schema}" CASCADE')
        cur.execute(f'CREATE SCHEMA "{store.schema}"')
        cur.execute("CREATE TABLE idhooks_meta (version integer NOT NULL)")
        cur.execute("INSERT INTO idhooks_meta VALUES (%s)", (upto,))
        for script in MIGRATIONS[:upto]:
            for statement in filter(str.strip, script.split(";")):
                cur.execute(statement)


@pytest.mark.parametrize("old_version", range(1, len(MIGRATIONS)))
def test_an_old_schema_is_taken_through_every_migration_keeping_its_data(
        postgres_store: PostgresStore, tmp_path: Path, old_version: int) -> None:
    apply_migrations(postgres_store, old_version)
    with postgres_store._tx("test") as cur:  # what that version could hold: an event and a job
        cur.execute("INSERT INTO events (jti, webhook, iat_ms, received_at, uris, body, status) "
                    "VALUES ('old', 'asgardeo', %s, %s, '[]', '\\x7b7d', 'pending')", (T0 * 1000, T0))
        cur.execute("INSERT INTO jobs (id, key, destination, payload, status, created_at, due_at) "
                    "VALUES ('j1', 'old:r:0', 'slack', '{}', 'dead', %s, %s)", (T0, T0))
    upgraded = postgres_store.reopen(tmp_path / "spool2")
    try:
        assert upgraded.schema_version() == len(MIGRATIONS)
        assert upgraded.get_event("old").body == b"{}"
        assert upgraded.ingest(event("old"), WINDOW) == DUPLICATE
        assert upgraded.requeue_dead("j1", T0 + 5) == 1  # the newest schema's columns work on old rows
        assert upgraded.get_job("j1").retry_window_start == T0 + 5
        assert upgraded.suppress_try("rule", "g", T0 + 10, T0, "t") is True
    finally:
        upgraded.close()


def test_two_processes_upgrading_at_once_upgrade_once(postgres_available: str, tmp_path: Path) -> None:
    group, stores, errors = unique_group(), [], []

    def start(name: str) -> None:
        try:
            stores.append(PostgresStore(postgres_available, group=group, spool_dir=tmp_path / name))
        except StoreError as exc:
            errors.append(exc)

    threads = [threading.Thread(target=start, args=(f"p{i}",)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    try:
        assert errors == [] and {s.schema_version() for s in stores} == {len(MIGRATIONS)}
    finally:
        drop_group(stores[0])
        for store in stores:
            store.close()


def test_job_leases_are_measured_by_the_database_clock(postgres_store: PostgresStore) -> None:
    """A host whose clock runs an hour ahead (its `now`) cannot take over a job another host holds."""
    postgres_store.complete_event("", [], [NewJob("k", "slack", "slack", {})], T0)
    [job] = postgres_store.claim_jobs("host-a", LEASE, 10, T0 + 1)
    assert postgres_store.claim_jobs("host-b", LEASE, 10, T0 + 3600) == []
    postgres_store.retry_job(job.id, T0 + 2, "HTTP 503")
    assert [j.lease_owner for j in postgres_store.claim_jobs("host-b", LEASE, 10, T0 + 3600)] == ["host-b"]


def test_new_jobs_wake_listeners_in_other_processes_of_the_deployment_only(postgres_store: PostgresStore,
                                                                           postgres_available: str,
                                                                           tmp_path: Path) -> None:
    """Nor the creating process's own listeners: its processor wakes its worker directly, and a second wake-up
    of every idle worker only made each of them claim again and find nothing."""
    other_process = postgres_store.reopen(tmp_path / "b")
    other_deployment = open_postgres_store(postgres_available, tmp_path / "c")
    woken, elsewhere, itself = threading.Event(), threading.Event(), threading.Event()
    try:
        other_process.on_new_jobs(woken.set)
        other_deployment.on_new_jobs(elsewhere.set)
        postgres_store.on_new_jobs(itself.set)
        assert all(s.listening.wait(30) for s in (other_process, other_deployment, postgres_store))
        postgres_store.ingest(event("e"), WINDOW)
        postgres_store.complete_event("e", [], [], T0)
        assert not woken.wait(0.5)  # no job, no wake-up
        postgres_store.complete_event("e2", [], [NewJob("e2:r:0", "slack", "slack", {})], T0)
        assert woken.wait(5)
        assert not itself.wait(0.5) and not elsewhere.is_set()
        woken.clear()
        other_process.complete_event("e3", [], [NewJob("e3:r:0", "slack", "slack", {})], T0)
        assert itself.wait(5) and not woken.wait(0.5)  # the same, the other way round
    finally:
        other_process.close()
        drop_group(other_deployment)
        other_deployment.close()


def test_a_job_queued_by_another_process_is_delivered_without_waiting_for_the_poll(
        postgres_store: PostgresStore, http_peer: HttpPeer, tmp_path: Path) -> None:
    """The delivery worker of a process that did not create the job is woken by the NOTIFY: with its poll an
    hour long, the job still arrives (bounded generously, the machine may be loaded)."""
    other_process = postgres_store.reopen(tmp_path / "b")
    delivery = DeliveryConfig(workers=2, lease=30, retry_for=600, backoff_initial=5, backoff_max=60,
                              per_destination_concurrency=1, shutdown_grace=5)
    worker = DeliveryWorker(other_process, Current(actions_for(target=http_peer.url)), delivery, Metrics(),
                            poll_interval=3600)

    def queue(jti: str) -> None:
        postgres_store.complete_event("", [], [NewJob(key=f"{jti}:r:0", destination="target", action="http",
                                                      message={"path": "/users", "json": {"jti": jti}}, rule="r",
                                                      jti=jti)], time.time())

    try:
        other_process.on_new_jobs(worker.notify)
        assert other_process.listening.wait(30)
        worker.start()
        queue("first")  # found by the worker's first claim or by the wake-up
        assert [r.json()["jti"] for r in http_peer.wait_for(1, timeout=30)] == ["first"]
        queue("second")  # the worker is idle now: only the NOTIFY can wake it before the hour is up
        assert [r.json()["jti"] for r in http_peer.wait_for(2, timeout=30)] == ["first", "second"]
    finally:
        worker.stop(grace=5)
        other_process.close()


def test_pooled_connections_are_handed_out_without_a_round_trip_and_replaced_once_the_server_ends_them(
        postgres_store: PostgresStore, postgres_available: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every store call used to send an empty query first (the pool's check) and wait for its answer; a quiet
    connection is now used as it is, and one whose session the server ended (a restart, pg_terminate_backend)
    is still noticed and replaced: the caller never sees the dead connection."""
    checks: list[Any] = []
    execute = psycopg.Connection.execute

    def counting(conn: psycopg.Connection, query: Any, *args: Any, **kwargs: Any) -> Any:
        if query == "":
            checks.append(conn)
        return execute(conn, query, *args, **kwargs)

    monkeypatch.setattr(psycopg.Connection, "execute", counting)
    for index in range(5):
        assert postgres_store.ingest(event(f"quiet{index}"), WINDOW) == ACCEPTED
        assert postgres_store.get_event(f"quiet{index}") is not None
    assert checks == []

    with psycopg.connect(postgres_available, autocommit=True) as admin:
        query = ("SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND application_name = 'idhooks'"
                 " AND pid <> pg_backend_pid()")
        pids = [row[0] for row in admin.execute(query)]
        assert pids
        for pid in pids:
            admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
        deadline = time.monotonic() + 30
        while set(pids) & {row[0] for row in admin.execute(query)} and time.monotonic() < deadline:
            time.sleep(0.05)
    assert postgres_store.ingest(event("after"), WINDOW) == ACCEPTED  # into PostgreSQL, not the spool
    assert not postgres_store.spool.active
    assert postgres_store.get_event("after") is not None
    assert checks  # the ended sessions were checked (and replaced) before use


def test_a_dead_letter_requeued_inside_the_server_wakes_its_own_worker(postgres_store: PostgresStore) -> None:
    """The API and console re-queue in the server process, whose listener skips its own NOTIFYs."""
    woken = threading.Event()
    postgres_store.on_new_jobs(woken.set)
    postgres_store.complete_event("", [], [NewJob("k", "slack", "slack", {})], T0)
    [job] = postgres_store.claim_jobs("w", LEASE, 1, T0 + 1)
    postgres_store.dead_job(job.id, "HTTP 400")
    woken.clear()
    assert postgres_store.requeue_dead(job.id, T0 + 2) == 1
    assert woken.is_set()


def test_a_batch_completion_the_database_refuses_records_nothing(postgres_store: PostgresStore) -> None:
    """Completing a batch is one pipelined round trip (no BEGIN and COMMIT of its own): still all or nothing."""
    with postgres_store._tx("test") as cur:
        cur.execute("CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS "
                    "$$ BEGIN RAISE EXCEPTION 'refused %', NEW.jti; END $$")
        cur.execute("CREATE TRIGGER refuse BEFORE UPDATE ON events FOR EACH ROW WHEN (NEW.jti = 'bad') "
                    "EXECUTE FUNCTION refuse()")
    for jti in ("ok", "bad"):
        postgres_store.ingest(event(jti), WINDOW)
    with pytest.raises(StoreError, match="completing events: refused bad"):
        postgres_store.complete_events([("ok", [{"rule": "r"}], [NewJob("ok:r:0", "slack", "slack", {})]),
                                        ("bad", [], [])], T0 + 1)
    assert postgres_store.list_jobs() == []
    assert {e.jti: e.status for e in postgres_store.list_events()} == {"ok": "pending", "bad": "pending"}
    postgres_store.complete_events([("ok", [{"rule": "r"}], [NewJob("ok:r:0", "slack", "slack", {})])], T0 + 2)
    assert [j.key for j in postgres_store.list_jobs()] == ["ok:r:0"]  # the connection is usable again


def test_deployments_in_one_database_share_nothing(postgres_store: PostgresStore, postgres_available: str,
                                                    tmp_path: Path) -> None:
    hostile = 'x"; DROP SCHEMA public CASCADE; --'
    other = open_postgres_store(postgres_available, tmp_path / "o", group=hostile)
    try:
        assert postgres_store.ingest(event("same"), WINDOW) == ACCEPTED
        assert other.ingest(event("same"), WINDOW) == ACCEPTED
        assert other.schema == hostile and [e.jti for e in other.list_events()] == ["same"]
        assert postgres_store.stats().events == {"pending": 1}
    finally:
        drop_group(other)
        other.close()


@pytest.mark.parametrize("group", ["", "g" * 64, "nul\x00byte"])
def test_a_group_that_cannot_name_a_schema_is_refused(postgres_available: str, tmp_path: Path, group: str) -> None:
    with pytest.raises(StoreError, match="store.group .*: a PostgreSQL store needs 1 to 63 bytes"):
        PostgresStore(postgres_available, group=group, spool_dir=tmp_path)


def test_retention_deletes_in_bounded_batches(postgres_store: PostgresStore, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(postgres_module, "PRUNE_BATCH", 7)
    for i in range(30):
        postgres_store.ingest(event(f"e{i}", at=T0 + i), WINDOW)
    postgres_store.complete_events([(f"e{i}", [], []) for i in range(25)], T0 + 40)
    statements: list[str] = []
    original = postgres_store._count

    def counting(what: str, query: str, args: tuple = ()) -> int:
        statements.append(what)
        return original(what, query, args)

    monkeypatch.setattr(postgres_store, "_count", counting)
    assert postgres_store.prune(now=T0 + 100, retention=80, dedup_window=10) == 20  # e0..e19 (not the pending)
    assert statements.count("pruning events") == 3  # 7 + 7 + 6: no transaction deletes more than a batch
    assert sorted(e.jti for e in postgres_store.list_events(limit=100)) == sorted(f"e{i}" for i in range(20, 30))


def test_the_password_is_never_shown(postgres_available: str, tmp_path: Path) -> None:
    """From the URL (via ${ENV}) or store.password_file: masked in the store's URL, the config's repr and errors."""
    dead_port = free_port()
    (tmp_path / "pgpass").write_text("s3cret-from-file\n")
    config_path = basic_config(tmp_path, store_url=f"postgresql://idhooks:${{PG_PASSWORD}}@127.0.0.1:{dead_port}/x")
    text = config_path.read_text().replace("store: {url:", "store: {password_file: pgpass, url:")
    config_path.write_text(text)
    config = load_config(config_path, env={"PG_PASSWORD": "s3cret-in-env"})
    assert config.store.password == Secret("s3cret-from-file")
    shown = repr(config.store)
    assert "s3cret" not in shown and "idhooks:***@" in shown
    with pytest.raises(StoreError) as err:
        open_store(config.store)
    assert "s3cret" not in str(err.value) and f"127.0.0.1:{dead_port}" in str(err.value)
    store = PostgresStore(postgres_available.replace("postgresql://postgres@", "postgresql://postgres:s3cret@"),
                          group=unique_group(), spool_dir=tmp_path / "spool", password=Secret("s3cret-2"))
    try:  # trust authentication accepts any password: this checks only what is shown
        assert "s3cret" not in store.url and "postgres:***@" in store.url
    finally:
        drop_group(store)
        store.close()


def test_password_file_is_for_postgresql_only(tmp_path: Path) -> None:
    (tmp_path / "pgpass").write_text("x")
    config_path = basic_config(tmp_path, store_url="redis://127.0.0.1:6379/0")
    config_path.write_text(config_path.read_text().replace("store: {url:", "store: {password_file: pgpass, url:"))
    with pytest.raises(ConfigError, match="store.password_file: only used with a PostgreSQL store"):
        load_config(config_path)


def test_hostile_values_are_stored_exactly(postgres_store: PostgresStore) -> None:
    """Bodies are bytes (any byte, NUL included), JSON fields are escaped text: nothing is interpreted."""
    body = b"\x00\xff" + "'); DROP TABLE events; --\u2028".encode() + b"x" * 1_000_000
    incoming = event("'; DROP TABLE events; --")
    incoming = type(incoming)(**{**incoming.__dict__, "body": body, "uris": ("\x00\ud800<script>",)})
    assert postgres_store.ingest(incoming, WINDOW) == ACCEPTED
    stored = postgres_store.get_event("'; DROP TABLE events; --")
    assert stored.body == body and stored.uris == ("\x00\ud800<script>",)
    postgres_store.complete_event(stored.jti, [{"why": "\x00\ud800"}],
                                  [NewJob("k\n\r", "d", "http", {"v": "\x00"})], T0)
    assert postgres_store.get_event(stored.jti).decisions == [{"why": "\x00\ud800"}]
    assert postgres_store.list_jobs()[0].key == "k\n\r"


def test_missing_psycopg_package_says_how_to_install(tmp_path: Path) -> None:
    code = ("import sys; sys.modules['psycopg'] = None; sys.modules['psycopg_pool'] = None\n"  # no 'postgres' extra
            "from engine.store.postgres import PostgresStore\n"
            "try:\n    PostgresStore('postgresql://127.0.0.1/x')\n"
            "except Exception as exc:\n    print(type(exc).__name__, exc)\n")
    out = subprocess.run([sys.executable, "-c", code], env={**os.environ, "PYTHONPATH": str(ROOT)},
                         capture_output=True, text=True, timeout=30, cwd=tmp_path)
    assert out.stdout.strip() == ("ConfigError store.url: the PostgreSQL store needs the psycopg and psycopg-pool "
                                  "packages: pip install 'idhooks[postgres]'")


def test_an_unreadable_password_file_is_a_config_error(tmp_path: Path) -> None:
    config_path = basic_config(tmp_path, store_url="postgresql://idhooks@127.0.0.1:5432/idhooks")
    config_path.write_text(config_path.read_text().replace("store: {url:", "store: {password_file: nowhere, url:"))
    with pytest.raises(ConfigError, match=r"store.password_file: cannot read .*nowhere: No such file"):
        load_config(config_path)


def test_only_the_intake_waits_for_the_wal_flush(postgres_store: PostgresStore) -> None:
    """The 2xx promise (ingest) commits with synchronous_commit on; claims, acks and rule state do not wait for
    the flush (a PostgreSQL crash can only make them be redone: tests/test_postgres_serve.py crashes it)."""
    with postgres_store._conn("test", durable=True) as conn:
        assert conn.execute("SHOW synchronous_commit").fetchone()[0] == "on"
    with postgres_store._conn("test") as conn:
        assert conn.execute("SHOW synchronous_commit").fetchone()[0] == "off"
