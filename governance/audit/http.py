"""A small HTTP/1.1 client for model endpoints: keep-alive connections on asyncio streams, h11 for the protocol.

Why not httpx here: an audit sends tens of thousands of small JSON requests, and httpx spends about 2 ms of CPU on
each (measured in ../shared/reviews/PERFORMANCE.md: 72% of the client's samples), which caps a 2-core machine at
about 500 requests a second. This client does only what an audit needs — one persistent connection per worker,
JSON in and out, timeouts, no redirects — with h11 (the sans-I/O HTTP/1.1 state machine httpx itself uses)
doing the parsing. It also connects to an address checked in advance (:mod:`governance.endpoints`): the host
name is resolved once, by the check, and the connection goes to that address with the original name in the
``Host`` header and in TLS's SNI and certificate check, so DNS cannot be rebound between check and use.
"""

from __future__ import annotations

import asyncio
import json
import ssl
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import h11

USER_AGENT = "governance-audit/1"


class TransportError(Exception):
    """No complete reply: the connection failed, timed out or broke the protocol (the caller may retry)."""


@dataclass(frozen=True)
class Target:
    """Where requests go: the URL's host and port, the address to connect to, and the path prefix."""

    scheme: str
    host: str
    port: int
    address: str
    prefix: str

    @classmethod
    def of(cls, base_url: str, address: str | None = None) -> Target:
        parts = urlsplit(base_url)
        scheme = parts.scheme.lower()
        if scheme not in {"http", "https"} or not parts.hostname:
            raise ValueError(f"not an http(s) URL: {base_url}")
        port = parts.port or (443 if scheme == "https" else 80)
        return cls(scheme, parts.hostname, port, address or parts.hostname, parts.path.rstrip("/"))

    @property
    def host_header(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return host if self.port == (443 if self.scheme == "https" else 80) else f"{host}:{self.port}"


class Connection:
    """One keep-alive HTTP/1.1 connection, reopened when the server closes it. Not shared between tasks."""

    def __init__(self, target: Target, *, headers: dict[str, str] | None = None, connect_timeout: float = 10.0,
                 ssl_context: ssl.SSLContext | None = None):
        self.target = target
        self.connect_timeout = connect_timeout
        self.ssl_context = ssl_context
        self.headers = [("host", target.host_header), ("user-agent", USER_AGENT), ("accept", "application/json"),
                        *((k.lower(), v) for k, v in (headers or {}).items())]
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._protocol: h11.Connection | None = None

    async def _open(self) -> None:
        context = None
        if self.target.scheme == "https":
            context = self.ssl_context or ssl.create_default_context()
        try:
            self._reader, self._writer = await asyncio.wait_for(asyncio.open_connection(
                self.target.address, self.target.port, ssl=context,
                server_hostname=self.target.host if context else None), self.connect_timeout)
        except (OSError, asyncio.TimeoutError, ssl.SSLError) as exc:
            raise TransportError(f"cannot connect to {self.target.host}:{self.target.port}: {exc!r}") from None
        self._protocol = h11.Connection(h11.CLIENT)

    async def close(self) -> None:
        writer, self._writer, self._reader, self._protocol = self._writer, None, None, None
        if writer is not None:
            writer.close()
            try:
                await writer.wait_closed()
            except (OSError, ssl.SSLError):
                pass

    async def request(self, method: str, path: str, body: Any = None, *, timeout: float) -> tuple[int, bytes]:
        """(status, body) of one request; JSON ``body`` is sent as application/json."""
        try:
            async with asyncio.timeout(timeout):  # no extra task per request, unlike wait_for
                return await self._exchange(method, path, body)
        except TimeoutError:
            await self.close()
            raise TransportError(f"no reply within {timeout} s") from None
        except (OSError, ssl.SSLError, h11.ProtocolError) as exc:
            await self.close()
            raise TransportError(f"the connection broke: {exc!r}") from None

    async def _exchange(self, method: str, path: str, body: Any) -> tuple[int, bytes]:
        if self._protocol is None or self._protocol.our_state is not h11.IDLE:
            await self.close()
            await self._open()
        protocol, writer, reader = self._protocol, self._writer, self._reader
        data = b"" if body is None else json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()
        headers = list(self.headers)
        if body is not None:
            headers += [("content-type", "application/json"), ("content-length", str(len(data)))]
        writer.write(protocol.send(h11.Request(method=method, target=self.target.prefix + path, headers=headers)))
        if data:
            writer.write(protocol.send(h11.Data(data=data)))
        writer.write(protocol.send(h11.EndOfMessage()))
        await writer.drain()
        status, chunks = 0, []
        while True:
            event = protocol.next_event()
            if event is h11.NEED_DATA:
                received = await reader.read(65536)
                if not received and protocol.their_state is h11.SEND_RESPONSE and status == 0:
                    raise TransportError("the server closed the connection without replying")
                protocol.receive_data(received)
                continue
            if isinstance(event, h11.Response):
                status = event.status_code
            elif isinstance(event, h11.Data):
                chunks.append(bytes(event.data))
            elif isinstance(event, h11.EndOfMessage):
                break
            elif isinstance(event, h11.ConnectionClosed):
                raise TransportError("the server closed the connection mid-reply")
        if protocol.our_state is h11.MUST_CLOSE or protocol.their_state is h11.MUST_CLOSE:
            await self.close()
        else:
            protocol.start_next_cycle()
        return status, b"".join(chunks)


async def get_json(target: Target, path: str, *, headers: dict[str, str] | None = None,
                   timeout: float = 10.0) -> tuple[int, bytes]:
    """One GET on a fresh connection (e.g. the model listing before an audit)."""
    connection = Connection(target, headers=headers, connect_timeout=timeout)
    try:
        return await connection.request("GET", path, timeout=timeout)
    finally:
        await connection.close()
