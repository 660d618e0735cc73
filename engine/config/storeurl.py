"""The store URL schemes, in one place for the config check, `open_store`, `idhooks migrate` and the Redis
client (engine/store/redis_connect.py). No imports: engine.config.settings reads it before any store is loaded."""

SQLITE_SCHEME = "sqlite:///"
SENTINEL_SCHEMES = ("redis+sentinel://", "rediss+sentinel://")
"""A replicated Redis whose current primary Sentinel names."""
REDIS_SCHEMES = ("redis://", "rediss://", "unix://", *SENTINEL_SCHEMES)
TLS_SCHEMES = ("rediss://", "rediss+sentinel://")
POSTGRES_SCHEMES = ("postgresql://", "postgres://")
"""PostgreSQL (engine/store/postgres.py); TLS is chosen by `sslmode` in the URL or by store.ca_file."""
