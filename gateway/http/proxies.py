"""Trusted proxies: who the client is behind a reverse proxy.

`X-Forwarded-For` is a list each proxy appends its peer to, so everything left of what our
own proxies added was written by the client and proves nothing. The client is therefore the
right-most hop that is *not* a trusted proxy (`GATEWAY_TRUSTED_PROXIES`, default loopback),
and the header counts only when the connection itself comes from a trusted proxy.
`TrustedProxyMiddleware` writes that address into the ASGI scope, so the rate limits
(`client_ip`) and the access log see one and the same client. It replaces uvicorn's
`--proxy-headers`, whose `--forwarded-allow-ips '*'` took the left-most hop: the client's own.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

from starlette.types import ASGIApp, Receive, Scope, Send

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
_SCHEMES = {b"http": "http", b"https": "https"}


def parse_address(text: str) -> Address | None:
    """The address in one hop (`1.2.3.4`, `1.2.3.4:80`, `::1`, `[::1]:80`), or None."""
    text = text.strip()
    if text.startswith("["):
        text = text[1 : text.find("]")] if "]" in text else ""
    elif text.count(":") == 1:
        text = text.split(":", 1)[0]
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    # A dual-stack socket shows IPv4 peers as ::ffff:a.b.c.d; they are IPv4 clients.
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


class TrustedProxies:
    """The proxies whose `X-Forwarded-For` is believed, and the right-most-untrusted rule."""

    def __init__(self, networks: Iterable[str]) -> None:
        self.networks = [ipaddress.ip_network(n, strict=False) for n in networks]

    def trusts(self, address: Address | None) -> bool:
        return address is not None and any(address in network for network in self.networks)

    def client(self, peer: str, forwarded_for: Iterable[str]) -> str:
        """The client's address, given the connection's peer and the header's values.

        Read from the right: trusted hops are our proxies, the first other address is the
        client. A hop that is not an address (`unknown`, garbage) ends the walk at the
        proxy that passed it on, so no spelling can make up a fresh client.
        """
        nearest = parse_address(peer)
        if not self.trusts(nearest):
            return peer
        hops = [hop for value in forwarded_for for hop in value.split(",")]
        for hop in reversed(hops):
            address = parse_address(hop)
            if address is None:
                break
            nearest = address
            if not self.trusts(address):
                break
        return str(nearest)


class TrustedProxyMiddleware:
    """Sets the scope's client (and scheme) from a trusted proxy's forwarding headers."""

    def __init__(self, app: ASGIApp, *, trusted: Iterable[str]) -> None:
        self.app = app
        self.proxies = TrustedProxies(trusted)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        client = scope.get("client")
        if scope["type"] == "http" and client and self.proxies.trusts(parse_address(client[0])):
            self._rewrite(scope, client[0])
        await self.app(scope, receive, send)

    def _rewrite(self, scope: Scope, peer: str) -> None:
        """Only for a trusted peer: every other peer's headers are ignored."""
        forwarded: list[str] = []
        proto = None
        for name, value in scope["headers"]:
            if name == b"x-forwarded-for":
                forwarded.append(value.decode("latin-1"))
            elif name == b"x-forwarded-proto":
                proto = value.strip().lower()
        host = self.proxies.client(peer, forwarded)
        if host != peer:
            # Changed in place: uvicorn's access log reads this very scope. The port of a
            # forwarded client is unknown (0, as uvicorn writes it).
            scope["client"] = (host, 0)
        if proto in _SCHEMES:
            scope["scheme"] = _SCHEMES[proto]
