"""Refuse link-local and cloud metadata addresses at connect time, whatever DNS said a moment before.

actions/http.py resolves a host and refuses blocked addresses before calling; but a name can resolve to
something else when urllib3 resolves it again (DNS rebinding). `SafeAdapter` closes that gap by checking
the address the socket is actually connected to, for every connection a session opens without a proxy.
"""

from __future__ import annotations

import ipaddress
import socket
from typing import Any

import requests
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

from engine.errors import PermanentError

BLOCKED_NETWORKS = (ipaddress.ip_network("169.254.0.0/16"), ipaddress.ip_network("fe80::/10"),
                    ipaddress.ip_network("fd00:ec2::254/128"))


Networks = tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]


def blocked(address: str, networks: Networks = BLOCKED_NETWORKS) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """The address when it is in `networks` (IPv4-mapped IPv6 forms included), else None."""
    ip = ipaddress.ip_address(address.split("%")[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped:
        ip = ip.ipv4_mapped
    return ip if any(ip in network for network in networks) else None


def _guarded_pool(connection: type[HTTPConnection], pool: type[HTTPConnectionPool],
                  networks: Networks) -> type[HTTPConnectionPool]:
    """`pool` whose connections check the connected peer against `networks` before any byte is sent."""

    def new_conn(self: HTTPConnection) -> socket.socket:
        sock = connection._new_conn(self)
        ip = blocked(sock.getpeername()[0], networks)
        if ip is not None:
            sock.close()
            raise PermanentError(f"refused: {self.host!r} connected to {ip}, a link-local/metadata address "
                                 "idhooks never calls")
        return sock

    guarded = type(f"Safe{connection.__name__}", (connection,), {"_new_conn": new_conn})
    return type(f"Safe{pool.__name__}", (pool,), {"ConnectionCls": guarded})


class SafeAdapter(requests.adapters.HTTPAdapter):
    """An HTTPAdapter whose direct connections refuse peers in `networks` (default: link-local/metadata)."""

    def __init__(self, networks: Networks = BLOCKED_NETWORKS, **kwargs: Any) -> None:
        self.networks = networks
        super().__init__(**kwargs)

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = {
            "http": _guarded_pool(HTTPConnection, HTTPConnectionPool, self.networks),
            "https": _guarded_pool(HTTPSConnection, HTTPSConnectionPool, self.networks)}


def make_safe(session: requests.Session) -> requests.Session:
    """Mount SafeAdapter on `session` (idempotent), so every action sharing it is protected."""
    for prefix in ("https://", "http://"):
        if not isinstance(session.get_adapter(prefix), SafeAdapter):
            session.mount(prefix, SafeAdapter())
    return session
