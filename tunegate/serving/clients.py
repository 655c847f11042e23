"""The client address of a request, through the proxies the deployment trusts. Pure but for
Starlette's request object.

The peer of the TCP connection is the client unless it is one of ``serve.trusted_proxies``;
then the client is the right-most address of ``X-Forwarded-For`` that no trusted proxy
holds (every hop appends the address it saw, so only the part written by trusted proxies
can be believed; anything to the left of it the client wrote itself).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence

from fastapi import Request


def _trusted(address: str, proxies: Sequence[str]) -> bool:
    try:
        ip = ipaddress.ip_address(address.strip())
    except ValueError:
        return False
    return any(ip in ipaddress.ip_network(p, strict=False) for p in proxies)


def forwarded_client(peer: str | None, forwarded_for: str | None, proxies: Sequence[str]) -> str | None:
    """The client's address, from the peer and the X-Forwarded-For header (if any)."""
    if peer is None or not proxies or not _trusted(peer, proxies):
        return peer
    hops = [h.strip() for h in (forwarded_for or "").split(",") if h.strip()]
    for hop in reversed(hops):
        if not _trusted(hop, proxies):
            return hop
    return hops[0] if hops else peer


def client_address(request: Request, proxies: Sequence[str]) -> str | None:
    peer = request.client.host if request.client else None
    return forwarded_client(peer, request.headers.get("x-forwarded-for"), proxies)
