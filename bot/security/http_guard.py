"""A requests adapter that only talks to public addresses, checked on the connected socket.

The Jira library (requests, in a worker thread) resolves the host itself when it connects. A
check by name before the call leaves a window: a DNS name can answer a public address to the
check and 127.0.0.1 to the connection a moment later (DNS rebinding). Checking the peer address
of the socket just connected, before a byte is sent (no TLS handshake, no Authorization
header), closes that window whatever the resolver answered. Through a proxy the peer is the
proxy, which resolves the host itself, so this guard only covers direct connections; requests
builds proxy connections in another pool manager, which this adapter leaves alone.
"""

from __future__ import annotations

import logging
import socket
from ipaddress import ip_address
from typing import Any

from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.exceptions import NewConnectionError

from bot.security.urls import address_allowed

log = logging.getLogger(__name__)


def _require_public_peer(conn: HTTPConnection, sock: socket.socket) -> None:
    peer = str(sock.getpeername()[0])
    if address_allowed(ip_address(peer.split("%", 1)[0])):
        return
    sock.close()
    log.warning("refused to talk to %r: it connected to %s, not a public address", conn.host, peer)
    raise NewConnectionError(conn, f"{conn.host} connected to {peer}, which is not a public address")


class _PublicHTTPConnection(HTTPConnection):
    def _new_conn(self) -> socket.socket:
        sock = super()._new_conn()
        _require_public_peer(self, sock)
        return sock


class _PublicHTTPSConnection(HTTPSConnection):
    def _new_conn(self) -> socket.socket:
        sock = super()._new_conn()
        _require_public_peer(self, sock)
        return sock


class _PublicHTTPPool(HTTPConnectionPool):
    ConnectionCls = _PublicHTTPConnection


class _PublicHTTPSPool(HTTPSConnectionPool):
    ConnectionCls = _PublicHTTPSConnection


class PublicOnlyAdapter(HTTPAdapter):
    """An HTTPAdapter whose direct connections fail (ConnectionError) when the socket reaches
    a loopback, private, link-local or multicast address."""

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = {"http": _PublicHTTPPool, "https": _PublicHTTPSPool}
