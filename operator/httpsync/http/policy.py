"""Destination policy: which hosts an HttpSource (and a source's own sink) may reach.

An operator-level allow list and deny list of hostnames (``api.example.com``, ``*.example.com``)
and IP networks (``10.0.0.0/8``). Cloud metadata addresses are denied by default, whatever the
allow list says, unless the operator explicitly drops them from the deny list.

Every address is normalized before it is matched, so no other spelling of a denied address gets
through: IPv4 in the forms resolvers accept (``2852039166``, ``0xa9.0xfe.0xa9.0xfe``,
``0251.0376.0251.0376``, ``169.254.43518``), IPv4-mapped (``::ffff:a.b.c.d``) and IPv4-compatible
(``::a.b.c.d``) IPv6, NAT64 (``64:ff9b::/96``, ``64:ff9b:1::/48``) and 6to4 (``2002::/16``)
addresses match the IPv4 address they carry.

Three checks, from cheap to thorough:

- :meth:`DestinationPolicy.check` (sync, never blocks): the URL's host as written, and the DNS
  answers already known for it;
- :meth:`DestinationPolicy.check_resolved` (async): that, then the host's DNS answers, resolved
  with ``loop.getaddrinfo`` (in a thread, never on the event loop) and cached for a minute;
- :meth:`DestinationPolicy.check_addresses`: the addresses a connection is about to be made to; the
  HTTP layer's transport asks it from its resolver, so the addresses actually connected to are the
  ones checked (a DNS answer that changed since the check above is caught too).
"""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import socket
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from httpsync.errors import DestinationDeniedError

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

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

_NAT64 = (ipaddress.ip_network("64:ff9b::/96"), ipaddress.ip_network("64:ff9b:1::/48"))
_SIXTOFOUR = ipaddress.ip_network("2002::/16")
_V4_COMPATIBLE = ipaddress.ip_network("::/96")


# --------------------------------------------------------------------------- addresses


def _ipv4_part(text: str) -> int | None:
    """One part of an IPv4 address as inet_aton reads it: decimal, ``0x`` hex or ``0`` octal."""
    if not text:
        return None
    try:
        if text[:2].lower() == "0x":
            return int(text[2:], 16) if len(text) > 2 else 0
        if len(text) > 1 and text[0] == "0":
            return int(text[1:], 8)
        return int(text, 10) if text.isdigit() else None
    except ValueError:
        return None


def parse_ipv4(text: str) -> ipaddress.IPv4Address | None:
    """``text`` as an IPv4 address in any form inet_aton (and so getaddrinfo and URL parsers)
    accepts: 1 to 4 parts, each decimal, hex or octal, the last filling the remaining bytes."""
    parts = text.split(".")
    if len(parts) > 1 and parts[-1] == "":
        parts.pop()  # a trailing dot
    if not 1 <= len(parts) <= 4:
        return None
    numbers = [_ipv4_part(p) for p in parts]
    if any(n is None for n in numbers):
        return None
    values = [n for n in numbers if n is not None]
    *head, last = values
    if any(n > 255 for n in head) or last >= 256 ** (4 - len(head)):
        return None
    value = 0
    for n in head:
        value = value * 256 + n
    value = value * 256 ** (4 - len(head)) + last
    return ipaddress.IPv4Address(value)


def parse_address(host: str) -> IPAddress | None:
    """The IP address a URL host (``[v6]`` brackets, zone ids and any IPv4 form allowed) names,
    or None for a hostname."""
    text = host.strip().lower()
    if text.startswith("[") and text.endswith("]"):
        text = text[1:-1]
    text = text.split("%", 1)[0]  # an IPv6 zone id
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        pass
    if ":" in text:
        return None
    return parse_ipv4(text)


def embedded_ipv4(addr: IPAddress) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 address carries (mapped, compatible, NAT64, 6to4), if any."""
    if isinstance(addr, ipaddress.IPv4Address):
        return None
    if addr.ipv4_mapped is not None:
        return addr.ipv4_mapped
    packed = int(addr)
    if any(addr in n for n in _NAT64) or (addr in _V4_COMPATIBLE and packed > 1):
        return ipaddress.IPv4Address(packed & 0xFFFFFFFF)
    if addr.sixtofour is not None:
        return addr.sixtofour
    return None


def spellings_of(addr: IPAddress) -> list[IPAddress]:
    """``addr`` and the IPv4 address it carries, if any: what the lists are matched against."""
    inner = embedded_ipv4(addr)
    return [addr] if inner is None else [addr, inner]


# --------------------------------------------------------------------------- the lists


def _parse(entries: Iterable[str]) -> tuple[list[IPNetwork], list[str]]:
    nets: list[IPNetwork] = []
    hosts: list[str] = []
    for raw in entries:
        e = raw.strip().lower()
        if not e:
            continue
        try:
            net = ipaddress.ip_network(e, strict=False)
        except ValueError:
            addr = parse_address(e)
            if addr is None:
                hosts.append(e.rstrip("."))
                continue
            net = ipaddress.ip_network(addr)
        nets.append(net)
        if isinstance(net, ipaddress.IPv6Network) and net.prefixlen >= 96:
            inner = embedded_ipv4(net.network_address)
            if inner is not None:  # ::ffff:10.0.0.0/104 also means 10.0.0.0/8
                nets.append(ipaddress.ip_network(f"{inner}/{net.prefixlen - 96}", strict=False))
    return nets, hosts


def _host_matches(host: str, patterns: list[str]) -> bool:
    for p in patterns:
        if p.startswith("*."):
            if host.endswith(p[1:]) and host != p[2:]:
                return True
        elif host == p:
            return True
    return False


def host_of(url: str) -> str:
    """The host of ``url``, lower-case, without brackets or a trailing dot ("" if it has none)."""
    try:
        host = urlsplit(url).hostname or ""
    except ValueError:
        return ""
    return host.lower().rstrip(".")


@dataclass
class DestinationPolicy:
    allow: list[str] = field(default_factory=list)
    deny: list[str] = field(default_factory=lambda: list(DEFAULT_DENY))
    resolve: bool = True
    cache_seconds: float = 60.0

    def __post_init__(self) -> None:
        self._allow_nets, self._allow_hosts = _parse(self.allow)
        self._deny_nets, self._deny_hosts = _parse(self.deny)
        self._cache: dict[str, tuple[float, list[IPAddress]]] = {}

    # -- deciding

    def _denied(self, addr: IPAddress) -> bool:
        return any(a in n for a in spellings_of(addr) for n in self._deny_nets)

    def _allowed(self, addr: IPAddress) -> bool:
        return any(a in n for a in spellings_of(addr) for n in self._allow_nets)

    @property
    def has_allow_list(self) -> bool:
        return bool(self._allow_hosts or self._allow_nets)

    def _deny(self, host: str, addr: IPAddress | None = None) -> DestinationDeniedError:
        via = f" (it resolves to {addr})" if addr is not None and str(addr) != host else ""
        return DestinationDeniedError(
            f"host {host} is denied by the operator's destination policy{via} (cloud metadata and "
            "denied addresses cannot be synced); ask the platform team to allow it"
        )

    def _not_allowed(self, host: str) -> DestinationDeniedError:
        return DestinationDeniedError(
            f"host {host} is not in the operator's destination allow list; ask the platform team to "
            "add it (Helm value destinationPolicy.allow)"
        )

    def _decide(self, host: str, addrs: Sequence[IPAddress], *, final: bool) -> None:
        """Raise when ``host`` (with its addresses ``addrs``) may not be reached. ``final``: the
        addresses are all there will be (else an allow list by network waits for the DNS answer)."""
        literal = parse_address(host)
        if literal is not None:
            addrs = [literal, *addrs]
        if _host_matches(host, self._deny_hosts):
            raise self._deny(host)
        for a in addrs:
            if self._denied(a):
                raise self._deny(host, a)
        if not self.has_allow_list or _host_matches(host, self._allow_hosts):
            return
        if addrs and all(self._allowed(a) for a in addrs):
            return
        if addrs or final:
            raise self._not_allowed(host)

    def _known(self, host: str) -> list[IPAddress] | None:
        hit = self._cache.get(host)
        if hit and hit[0] > time.monotonic():
            return hit[1]
        return None

    def check(self, url: str) -> None:
        """Raise DestinationDeniedError when ``url`` may not be reached, judging from the URL and
        the DNS answers already known. Never blocks: see :meth:`check_resolved` for the rest."""
        host = host_of(url)
        if not host:
            raise DestinationDeniedError(f"URL {url!r} has no host")
        self._decide(host, self._known(host) or [], final=not self.resolve or parse_address(host) is not None)

    async def check_resolved(self, url: str) -> None:
        """:meth:`check`, then the host's DNS answers (resolved off the event loop, cached)."""
        self.check(url)
        host = host_of(url)
        if parse_address(host) is not None or not self.resolve:
            return
        addrs = self._known(host)
        if addrs is None:
            addrs = await self._resolve(host)
        self._decide(host, addrs, final=True)

    def check_addresses(self, host: str, addrs: Iterable[str]) -> None:
        """Raise when a connection to ``host`` at one of ``addrs`` (the resolver's answers) may not
        be made."""
        host = host.lower().rstrip(".")
        parsed = [a for a in (parse_address(x) for x in addrs) if a is not None]
        self._decide(host, parsed, final=True)

    async def _resolve(self, host: str) -> list[IPAddress]:
        loop = asyncio.get_running_loop()
        try:
            infos = await loop.getaddrinfo(host, None, proto=socket.IPPROTO_TCP)
            addrs = list({a for a in (parse_address(str(i[4][0])) for i in infos) if a is not None})
        except (OSError, UnicodeError, ValueError):
            addrs = []  # unresolvable: the request itself will fail with a clear connection error
        self._cache[host] = (time.monotonic() + self.cache_seconds, addrs)
        return addrs


def policy_of(check_url: Callable[..., Any] | None) -> DestinationPolicy | None:
    """The policy behind a ``check_url`` callable (``policy.check``), if it is one."""
    owner = getattr(check_url, "__self__", None)
    return owner if isinstance(owner, DestinationPolicy) else None


async def check_url_resolved(check_url: Callable[[str], None] | None, url: str) -> None:
    """Ask ``check_url`` about ``url``; when it is a policy's check, with the DNS answers too."""
    if check_url is None:
        return
    policy = policy_of(check_url)
    if policy is not None:
        await policy.check_resolved(url)
    else:
        check_url(url)


# --------------------------------------------------------------------------- command-line flags


def add_policy_arguments(parser: argparse.ArgumentParser) -> None:
    """``--allow-destination`` and ``--deny-destination``, as ``httpsync run`` has them."""
    parser.add_argument(
        "--allow-destination",
        action="append",
        default=None,
        metavar="HOST|CIDR",
        help="only these API hosts/networks may be synced (repeatable)",
    )
    parser.add_argument(
        "--deny-destination",
        action="append",
        default=None,
        metavar="HOST|CIDR",
        help="replace the default deny list (cloud metadata addresses; repeatable; '' for none)",
    )


def policy_from_args(args: argparse.Namespace) -> DestinationPolicy:
    """The policy of ``--allow-destination`` / ``--deny-destination`` (the default deny list unless
    ``--deny-destination`` replaces it)."""
    allow = [e for e in (getattr(args, "allow_destination", None) or []) if e.strip()]
    deny_arg = getattr(args, "deny_destination", None)
    deny = list(DEFAULT_DENY) if deny_arg is None else [e for e in deny_arg if e.strip()]
    return DestinationPolicy(allow=allow, deny=deny)
