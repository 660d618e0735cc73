"""Connections to PostgreSQL for engine/store/postgres.py: a psycopg 3 connection pool whose connections work in
the deployment's schema (`store.group`), with a deadline on connecting, on waiting for a pooled connection and on
every statement.

The password comes from the URL (where config.yaml can write `${ENV}`) or from `store.password_file`; it is
passed to libpq as a parameter, never put into a URL that could be shown. `ca_file`, `cert_file` and `key_file`
become libpq's sslrootcert, sslcert and sslkey; a CA file without an `sslmode` in the URL means
`sslmode=verify-full` (the server's certificate and host name verified), since a CA given and then not used
would be a silent downgrade.
"""

from __future__ import annotations

import select
from pathlib import Path
from typing import Any, Callable
from urllib.parse import parse_qsl, urlsplit

from engine.errors import ConfigError, StoreError
from engine.secrets import Secret, redact, redact_url

try:
    import psycopg
    from psycopg import sql
    from psycopg_pool import ConnectionPool
except ImportError:  # pragma: no cover - exercised only without the optional dependency
    psycopg = None

CONNECT_TIMEOUT = 5
"""Seconds libpq may take to open a connection (an unreachable server is noticed this fast)."""
POOL_TIMEOUT = 5.0
"""Seconds a caller waits for a pooled connection before StoreError."""
STATEMENT_TIMEOUT_MS = 30_000
"""No statement of the store runs longer (PostgreSQL cancels it)."""
MAX_SCHEMA_NAME = 63
"""PostgreSQL's identifier length (NAMEDATALEN - 1)."""


def connection_kwargs(url: str, *, password: Secret | None = None, ca_file: Path | None = None,
                      cert_file: Path | None = None, key_file: Path | None = None) -> dict[str, Any]:
    """libpq parameters besides the URL: password, TLS files, timeouts."""
    kwargs: dict[str, Any] = {"connect_timeout": CONNECT_TIMEOUT, "application_name": "idhooks"}
    if password is not None:
        kwargs["password"] = password.reveal()
    query = dict(parse_qsl(urlsplit(url).query))
    if ca_file is not None:
        kwargs["sslrootcert"] = str(ca_file)
        if "sslmode" not in query:
            kwargs["sslmode"] = "verify-full"
    if cert_file is not None:
        kwargs["sslcert"] = str(cert_file)
    if key_file is not None:
        kwargs["sslkey"] = str(key_file)
    return kwargs


def check_schema_name(group: str) -> str:
    """`store.group` names the PostgreSQL schema holding the deployment's tables."""
    if not group or len(group.encode()) > MAX_SCHEMA_NAME or "\x00" in group:
        raise StoreError(f"store.group {group!r}: a PostgreSQL store needs 1 to {MAX_SCHEMA_NAME} bytes (it names "
                         "the schema that holds the deployment's tables)")
    return group


def open_pool(url: str, schema: str, *, password: Secret | None = None, max_size: int = 16, durable: bool = True,
              on_connect: Callable[["psycopg.Connection"], None] = lambda conn: None,
              **tls: Path | None) -> "ConnectionPool":
    """An open pool of autocommit connections whose search_path is `schema`. Raises StoreError (naming the
    password-free URL and libpq's reason) when no connection can be made. A pool that is not `durable` commits
    with synchronous_commit off: a commit returns before its WAL is flushed (engine/store/postgres.py says what
    uses which). `on_connect` sees every new connection once it is set up."""
    if psycopg is None:
        raise ConfigError("store.url: the PostgreSQL store needs the psycopg and psycopg-pool packages: "
                          "pip install 'idhooks[postgres]'")
    kwargs = connection_kwargs(url, password=password, **tls)
    set_path = sql.SQL("SET search_path TO {}, public").format(sql.Identifier(schema))
    timeout = sql.SQL("SET statement_timeout = {}").format(sql.Literal(STATEMENT_TIMEOUT_MS))

    def configure(conn: "psycopg.Connection") -> None:
        conn.execute(set_path)
        conn.execute(timeout)
        if not durable:
            conn.execute("SET synchronous_commit = off")
        on_connect(conn)

    try:  # one connection first: its error says what is wrong (the pool's would only say it timed out)
        psycopg.connect(url, **kwargs).close()
    except psycopg.Error as exc:
        raise StoreError(f"PostgreSQL store {redact_url(url)}: cannot connect: {clean_error(exc, password)}") from None
    pool = ConnectionPool(url, kwargs={**kwargs, "autocommit": True}, min_size=1, max_size=max_size,
                          timeout=POOL_TIMEOUT, configure=configure, check=check_quiet_connection,
                          open=False, name="idhooks-store" if durable else "idhooks-store-work")
    try:
        pool.open(wait=True, timeout=POOL_TIMEOUT + CONNECT_TIMEOUT)
    except Exception as exc:  # noqa: BLE001 - PoolTimeout or a libpq error: both mean "cannot connect"
        pool.close(timeout=0)
        raise StoreError(f"PostgreSQL store {redact_url(url)}: cannot connect: "
                         f"{clean_error(exc, password)}") from None
    return pool


def check_quiet_connection(conn: "psycopg.Connection") -> None:
    """The pool's check before it hands out a connection, without a round trip while the connection is quiet.
    An idle connection's server says nothing until asked, so a socket with something to read means the server
    ended the session (a restart, a crash, pg_terminate_backend: its last message or the end of the stream):
    only then is it checked with a query, which fails, and the pool replaces it. A round trip on every
    checkout doubled the round trips of every store call, each one a wake-up of the server's backend that
    waits for a CPU on a loaded host."""
    if conn.closed or conn.pgconn.status != psycopg.pq.ConnStatus.OK:
        ConnectionPool.check_connection(conn)
        return
    poller = select.poll()  # not select(): descriptors above 1024 are legal in a busy server
    poller.register(conn.fileno(), select.POLLIN | select.POLLPRI)
    if poller.poll(0):
        ConnectionPool.check_connection(conn)


def listen_connection(url: str, *, password: Secret | None = None, **tls: Path | None) -> "psycopg.Connection":
    """A connection of its own (not pooled) for LISTEN."""
    return psycopg.connect(url, autocommit=True, **connection_kwargs(url, password=password, **tls))


def clean_error(exc: BaseException, password: Secret | None = None) -> str:
    """An exception's message on one line, the password masked (libpq never echoes it, but be sure)."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    return redact(text, [password]) if password is not None else text
