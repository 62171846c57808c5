"""Who is calling from where: the client's address (behind trusted proxies only) and user agent."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True, slots=True)
class ClientInfo:
    """The caller's address and user agent, as recorded on sessions and in the audit trail."""

    ip: str
    user_agent: str | None


def _parse_ip(value: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(value.strip())
    except ValueError:
        return None


def client_ip(peer: str, forwarded_for: Iterable[str], trusted: Sequence[IPNetwork]) -> str:
    """The socket peer, or the X-Forwarded-For client when the peer is a trusted proxy.

    `forwarded_for` is every X-Forwarded-For header value in order. Proxy headers are believed
    only from a configured proxy (OWASP ASVS V1.4 / RFC 7239 section 8.3: they are forgeable).
    """
    if not trusted:
        return peer
    peer_ip = _parse_ip(peer)
    if peer_ip is None or not any(peer_ip in net for net in trusted):
        return peer
    # Walk right to left past our own proxies; the first untrusted hop is the client.
    hops = [h for h in ",".join(forwarded_for).split(",") if h.strip()]
    for hop in reversed(hops):
        hop_ip = _parse_ip(hop)
        if hop_ip is None:
            break
        if not any(hop_ip in net for net in trusted):
            return str(hop_ip)
    return peer
