"""The store URL schemes, in one place for the config check, `open_store`, `idhooks migrate` and the Redis
client (engine/store/redis_connect.py). No imports: engine.config.settings reads it before any store is loaded."""

SQLITE_SCHEME = "sqlite:///"
SENTINEL_SCHEMES = ("redis+sentinel://", "rediss+sentinel://")
"""A replicated Redis whose current primary Sentinel names."""
REDIS_SCHEMES = ("redis://", "rediss://", "unix://", *SENTINEL_SCHEMES)
TLS_SCHEMES = ("rediss://", "rediss+sentinel://")
POSTGRES_SCHEMES = ("postgresql://", "postgres://")
"""PostgreSQL (engine/store/postgres.py); TLS is chosen by `sslmode` in the URL or by store.ca_file."""

STORE_BACKENDS: dict[tuple[str, ...], str] = {
    ("sqlite:///",): "engine.store.sqlite",
    REDIS_SCHEMES: "engine.store.redis",
    POSTGRES_SCHEMES: "engine.store.postgres",
}
"""URL prefixes -> the module of the store backend for them (its `open_backend(StoreConfig) -> Store`,
imported only when used). Adding a backend is one module plus one line here."""

STORE_SCHEMES = tuple(prefix for prefixes in STORE_BACKENDS for prefix in prefixes)
