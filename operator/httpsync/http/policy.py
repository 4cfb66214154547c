"""Destination policy: which hosts an HttpSource may reach.

An operator-level allow list and deny list of hostnames (``api.example.com``, ``*.example.com``)
and IP networks (``10.0.0.0/8``). Cloud metadata addresses are denied by default, whatever the
allow list says, unless the operator explicitly drops them from the deny list. A hostname is
resolved and each of its addresses is checked too, so a DNS name pointing at a metadata
address is caught.
"""

from __future__ import annotations

import ipaddress
import socket
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from httpsync.errors import DestinationDeniedError

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

# Instance metadata services: AWS/GCP/Azure/OpenStack/DigitalOcean (169.254.169.254), AWS IPv6,
# Alibaba, Oracle; plus the whole IPv4 link-local range they live in.
DEFAULT_DENY: tuple[str, ...] = (
    "169.254.0.0/16",
    "fd00:ec2::254/128",
    "100.100.100.200/32",
    "192.0.0.192/32",
    "metadata.google.internal",
    "metadata.goog",
    "metadata",
)


def _parse(entries: Iterable[str]) -> tuple[list[IPNetwork], list[str]]:
    nets: list[IPNetwork] = []
    hosts: list[str] = []
    for raw in entries:
        e = raw.strip().lower()
        if not e:
            continue
        try:
            nets.append(ipaddress.ip_network(e, strict=False))
        except ValueError:
            hosts.append(e.rstrip("."))
    return nets, hosts


def _host_matches(host: str, patterns: list[str]) -> bool:
    for p in patterns:
        if p.startswith("*."):
            if host.endswith(p[1:]) and host != p[2:]:
                return True
        elif host == p:
            return True
    return False


@dataclass
class DestinationPolicy:
    allow: list[str] = field(default_factory=list)
    deny: list[str] = field(default_factory=lambda: list(DEFAULT_DENY))
    resolve: bool = True
    cache_seconds: float = 60.0

    def __post_init__(self) -> None:
        self._allow_nets, self._allow_hosts = _parse(self.allow)
        self._deny_nets, self._deny_hosts = _parse(self.deny)
        self._cache: dict[str, tuple[float, list[ipaddress.IPv4Address | ipaddress.IPv6Address]]] = {}

    def _addresses(self, host: str) -> list[ipaddress.IPv4Address | ipaddress.IPv6Address]:
        try:
            return [ipaddress.ip_address(host)]
        except ValueError:
            pass
        if not self.resolve:
            return []
        hit = self._cache.get(host)
        if hit and hit[0] > time.monotonic():
            return hit[1]
        try:
            infos = socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP)
            addrs = list({ipaddress.ip_address(i[4][0].split("%")[0]) for i in infos})
        except (OSError, ValueError):
            addrs = []  # unresolvable: the request itself will fail with a clear connection error
        self._cache[host] = (time.monotonic() + self.cache_seconds, addrs)
        return addrs

    def check(self, url: str) -> None:
        """Raise DestinationDeniedError when ``url`` may not be reached."""
        host = (urlsplit(url).hostname or "").lower().rstrip(".")
        if not host:
            raise DestinationDeniedError(f"URL {url!r} has no host")
        addrs = self._addresses(host)
        if _host_matches(host, self._deny_hosts) or any(a in n for a in addrs for n in self._deny_nets):
            raise DestinationDeniedError(
                f"host {host} is denied by the operator's destination policy (cloud metadata and "
                "denied addresses cannot be synced); ask the platform team to allow it"
            )
        if not (self._allow_hosts or self._allow_nets):
            return
        if _host_matches(host, self._allow_hosts):
            return
        if addrs and all(any(a in n for n in self._allow_nets) for a in addrs):
            return
        raise DestinationDeniedError(
            f"host {host} is not in the operator's destination allow list; ask the platform team to "
            "add it (Helm value destinationPolicy.allow)"
        )
