"""The PostgreSQL store's schema, as numbered migrations applied at start (engine/store/postgres.py).

Each deployment (`store.group`) has a PostgreSQL schema of that name holding these tables; `idhooks_meta`
records the version. A store opened on an older version runs the missing steps in one transaction under an
advisory lock, so processes starting together upgrade it once. Never edit a released step: add one.

Times are epoch seconds (double precision) passed in by the caller, except job leases, which the database's
own clock measures (engine/store/postgres.py). JSON documents are stored as text exactly as serialised, so
every backend returns the same values.
"""

from __future__ import annotations

from engine.store.detections_postgres import MIGRATION as DETECTIONS_MIGRATION
from engine.store.detections_postgres import TABLES as DETECTION_TABLES

MIGRATIONS: list[str] = [
    # 1: events, the delivery queue, subscriptions and the quarantine
    """
    CREATE TABLE events (
        jti text PRIMARY KEY, webhook text NOT NULL, iat_ms double precision NOT NULL,
        received_at double precision NOT NULL, uris text NOT NULL, body bytea NOT NULL, status text NOT NULL,
        decisions text, processed_at double precision, lease_owner text NOT NULL DEFAULT '',
        lease_until double precision NOT NULL DEFAULT 0);
    CREATE INDEX events_received ON events (received_at);
    CREATE INDEX events_pending ON events (received_at, jti) WHERE status = 'pending';
    CREATE INDEX events_stale ON events (received_at) WHERE status = 'stale';
    CREATE INDEX events_webhook ON events (webhook, received_at);
    CREATE TABLE jobs (
        id text PRIMARY KEY, key text NOT NULL UNIQUE, destination text NOT NULL, payload text NOT NULL,
        status text NOT NULL, attempts integer NOT NULL DEFAULT 0, created_at double precision NOT NULL,
        due_at double precision NOT NULL, last_error text NOT NULL DEFAULT '',
        last_response text NOT NULL DEFAULT '', lease_owner text NOT NULL DEFAULT '',
        lease_until double precision NOT NULL DEFAULT 0, done_at double precision);
    CREATE INDEX jobs_due ON jobs (due_at, created_at) WHERE status = 'pending';
    CREATE INDEX jobs_created ON jobs (created_at, id);
    CREATE INDEX jobs_dead ON jobs (created_at) WHERE status = 'dead';
    CREATE INDEX jobs_done ON jobs (done_at) WHERE status = 'done';
    CREATE TABLE subscriptions (
        webhook text NOT NULL, topic text NOT NULL, mode text NOT NULL, at double precision NOT NULL,
        lease_expires_at double precision, reason text NOT NULL DEFAULT '', PRIMARY KEY (webhook, topic, mode));
    CREATE TABLE quarantine (
        seq bigserial PRIMARY KEY, id text NOT NULL UNIQUE, webhook text NOT NULL,
        received_at double precision NOT NULL, reason text NOT NULL, headers text NOT NULL, body bytea NOT NULL,
        size integer NOT NULL);
    """,
    # 2: stateful rules (thresholds, suppression, digests): engine/store/state_postgres.py
    """
    CREATE TABLE state_windows (
        rule_id text NOT NULL, group_key text NOT NULL, state text NOT NULL, expires_at double precision NOT NULL,
        PRIMARY KEY (rule_id, group_key));
    CREATE INDEX state_windows_expiry ON state_windows (rule_id, expires_at);
    CREATE TABLE state_groups (rule_id text PRIMARY KEY, groups integer NOT NULL);
    CREATE TABLE state_suppress (
        rule_id text NOT NULL, group_key text NOT NULL, until double precision NOT NULL, token text NOT NULL,
        PRIMARY KEY (rule_id, group_key));
    CREATE INDEX state_suppress_until ON state_suppress (until);
    CREATE TABLE state_digest_periods (
        rule_id text NOT NULL, period_start double precision NOT NULL, period_end double precision NOT NULL,
        due_at double precision NOT NULL, total integer NOT NULL DEFAULT 0, kept integer NOT NULL DEFAULT 0,
        PRIMARY KEY (rule_id, period_start));
    CREATE TABLE state_digest_items (
        rule_id text NOT NULL, period_start double precision NOT NULL, jti text NOT NULL,
        time double precision NOT NULL, item text NOT NULL, PRIMARY KEY (rule_id, period_start, jti));
    """,
    # 3: a re-queued dead letter's retry window starts again (NULL: at created_at)
    "ALTER TABLE jobs ADD COLUMN window_start double precision",
    # 4: a full quarantine evicts from the source (sender address) holding the most entries
    """
    ALTER TABLE quarantine ADD COLUMN source text NOT NULL DEFAULT '';
    CREATE INDEX quarantine_source ON quarantine (source, seq);
    """,
    # 5: ordered delivery (`ordered_by:`: jobs of one order key go one at a time, in event order, then insertion
    #    order `seq`) and the values `capture:` keeps per key, with the time of the key's newest event
    """
    ALTER TABLE jobs ADD COLUMN order_key text NOT NULL DEFAULT '';
    ALTER TABLE jobs ADD COLUMN order_at double precision NOT NULL DEFAULT 0;
    ALTER TABLE jobs ADD COLUMN seq bigserial;
    CREATE INDEX jobs_order ON jobs (order_key, order_at, seq) WHERE order_key <> '' AND status = 'pending';
    CREATE TABLE captures (ref text PRIMARY KEY, captured text NOT NULL DEFAULT '{}',
                           last_event_at double precision NOT NULL);
    CREATE INDEX captures_last ON captures (last_event_at);
    """,
    # 6: an event whose evaluation or recording failed is retried a bounded number of times, then 'failed'
    """
    ALTER TABLE events ADD COLUMN attempts integer NOT NULL DEFAULT 0;
    CREATE INDEX events_failed ON events (received_at) WHERE status = 'failed';
    """,
    # 7: sequence, new_value and absence rules: engine/store/detections_postgres.py
    DETECTIONS_MIGRATION,
    # 8: pages for the API and console: a job's event by key prefix whatever the database's collation
    'CREATE INDEX jobs_key_bytes ON jobs (key COLLATE "C")',
]

STATE_TABLES = ("state_windows", "state_groups", "state_suppress", "state_digest_periods", "state_digest_items",
                *DETECTION_TABLES)
