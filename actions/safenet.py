"""The addresses idhooks never calls: link-local and cloud metadata, whatever DNS or an allow-list says.

actions/http.py resolves a host and refuses these before calling; but a name can resolve to something else
when the connection resolves it again (DNS rebinding), so actions/httpclient.py checks the address each
socket is actually connected to as well, before a byte is sent.
"""

from __future__ import annotations

import ipaddress

BLOCKED_NETWORKS = (ipaddress.ip_network("169.254.0.0/16"), ipaddress.ip_network("fe80::/10"),
                    ipaddress.ip_network("fd00:ec2::254/128"))


Networks = tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]


def blocked(address: str, networks: Networks = BLOCKED_NETWORKS) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """The address when it is in `networks` (IPv4-mapped IPv6 forms included), else None."""
    ip = ipaddress.ip_address(address.split("%")[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped:
        ip = ip.ipv4_mapped
    return ip if any(ip in network for network in networks) else None
