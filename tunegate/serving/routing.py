"""Weighted, sticky routing between production and canary. Pure: no I/O.

Each caller hashes to a fixed point in [0, 100); the canary takes the callers below its
weight. A caller therefore always reaches the same release while the weights stand, and
raising the canary's weight only moves production callers to the canary (nobody flips
back and forth as a rollout advances). The salt is a secret of the deployment
(`routing_salt`, derived from the request log's secret): a client cannot compute offline
which ids reach the canary and so pick its release, and the split is independent of other
services that hash the same caller ids.
"""

from __future__ import annotations

import hashlib
import hmac
import uuid


def routing_salt(secret: bytes) -> str:
    """The deployment's routing salt: a keyed hash of its secret (tunegate/core/deployment.py), the
    same for every replica of one deployment, unknown to clients."""
    return hmac.new(secret, b"tunegate routing salt", hashlib.sha256).hexdigest()


def caller_point(caller: str, salt: str) -> float:
    """The caller's fixed point in [0, 100)."""
    digest = hashlib.sha256(f"{salt}\0{caller}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 * 100


def route(caller: str | None, weights: dict[str, int], salt: str) -> str:
    """The stage that answers `caller`: canary for its share of callers, else production.

    An anonymous request (no caller id) gets a random point: it is routed by weight
    but cannot be sticky.
    """
    if not weights:
        raise ValueError("nothing is live: promote a release to production first")
    canary = weights.get("canary", 0)
    if "production" not in weights:
        return "canary"
    point = caller_point(caller if caller else uuid.uuid4().hex, salt)
    return "canary" if point < canary else "production"
