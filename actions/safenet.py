"""Refuse link-local and cloud metadata addresses at connect time, whatever DNS said a moment before, and
put every connection under the running attempt's deadline (actions/deadline.py).

actions/http.py resolves a host and refuses blocked addresses before calling; but a name can resolve to
something else when urllib3 resolves it again (DNS rebinding). `SafeAdapter` closes that gap by checking
the address the socket is actually connected to, for every connection a session opens without a proxy.
Its connections (through a proxy too) also register their socket with the thread's delivery deadline each
time they are connected or reused, so a slow-drip peer is cut off when the attempt's time is up.
"""

from __future__ import annotations

import ipaddress
import socket
from typing import Any

import requests
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

from actions import deadline as deadlines
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
    """`pool` whose connections check the connected peer against `networks` before any byte is sent and
    are watched by the thread's delivery deadline."""

    def new_conn(self: HTTPConnection) -> socket.socket:
        sock = connection._new_conn(self)
        ip = blocked(sock.getpeername()[0], networks)
        if ip is not None:
            sock.close()
            raise PermanentError(f"refused: {self.host!r} connected to {ip}, a link-local/metadata address "
                                 "idhooks never calls")
        deadlines.watch(sock)
        return sock

    def request(self: HTTPConnection, *args: Any, **kwargs: Any) -> Any:
        deadlines.watch(self.sock)  # a reused connection; a new one is watched in new_conn
        return connection.request(self, *args, **kwargs)

    guarded = type(f"Safe{connection.__name__}", (connection,), {"_new_conn": new_conn, "request": request})
    return type(f"Safe{pool.__name__}", (pool,), {"ConnectionCls": guarded})


class SafeAdapter(requests.adapters.HTTPAdapter):
    """An HTTPAdapter whose direct connections refuse peers in `networks` (default: link-local/metadata)."""

    def __init__(self, networks: Networks = BLOCKED_NETWORKS, **kwargs: Any) -> None:
        self.networks = networks
        super().__init__(**kwargs)

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = _pools(self.networks)

    def proxy_manager_for(self, proxy: str, **proxy_kwargs: Any) -> Any:
        """Through a proxy the peer is the proxy (no address check), but the deadline still applies."""
        manager = super().proxy_manager_for(proxy, **proxy_kwargs)
        if not proxy.lower().startswith("socks"):  # SOCKS managers bring their own pool classes
            manager.pool_classes_by_scheme = _pools(())
        return manager


def _pools(networks: Networks) -> dict[str, type[HTTPConnectionPool]]:
    return {"http": _guarded_pool(HTTPConnection, HTTPConnectionPool, networks),
            "https": _guarded_pool(HTTPSConnection, HTTPSConnectionPool, networks)}


def make_safe(session: requests.Session) -> requests.Session:
    """Mount SafeAdapter on `session` (idempotent), so every action sharing it is protected."""
    for prefix in ("https://", "http://"):
        if not isinstance(session.get_adapter(prefix), SafeAdapter):
            session.mount(prefix, SafeAdapter())
    return session
