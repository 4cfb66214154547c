"""An httpx transport that sends requests with aiohttp.

httpx keeps doing what the client relies on (auth flows, redirects and the checks on them, cookies,
timeouts, decoding of the body); only the HTTP/1.1 connection handling moves to aiohttp, whose C
parser costs several times less CPU per request than httpcore + h11. Responses are read whole (the
engine reads every body anyway).

``max_body_bytes`` bounds a body while it streams in: the bytes on the wire, and for a ``gzip`` or
``deflate`` body the bytes it inflates to (inflated here, a bounded piece at a time, so a small body
that inflates to gigabytes never does): past it, :class:`~httpsync.errors.ResponseTooLargeError`.

aiohttp's exceptions are mapped onto httpx's, so the client's retry and error handling (TLS
verification failures included) stay the same. Proxies come from the environment (``HTTP(S)_PROXY``,
``NO_PROXY``), like httpx's default; ``.netrc`` is not read (httpx does not read it either).

Given a destination policy, the transport's DNS resolver checks every answer before a connection
is made (:class:`PolicyResolver`): the addresses connected to are the ones the policy allowed, and
an IP-literal host is checked as written. A proxy's own address is not the destination's: it is
not checked.
"""

from __future__ import annotations

import asyncio
import functools
import os
import socket
import ssl
import zlib
from typing import Any

import aiohttp
import httpx
import yarl
from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.helpers import get_env_proxy_for_url
from aiohttp.resolver import DefaultResolver

from httpsync.errors import DestinationDeniedError, ResponseTooLargeError
from httpsync.http.policy import DestinationPolicy

TRANSPORT_ENV = "HTTPSYNC_HTTP_TRANSPORT"

# Set by aiohttp from the request it sends, or not applicable (the body is sent whole).
_SKIP_HEADERS = frozenset({b"host", b"content-length", b"transfer-encoding"})
_NO_PROXY: tuple[None, None] = (None, None)
_READ_CHUNK = 64 * 1024
# Content-Encodings inflated here under the limit (zlib wbits: gzip header, zlib header or raw deflate).
_INFLATE = {"gzip": 16 + zlib.MAX_WBITS, "x-gzip": 16 + zlib.MAX_WBITS, "deflate": zlib.MAX_WBITS}


def too_large(limit: int) -> ResponseTooLargeError:
    return ResponseTooLargeError(
        f"the response body is larger than spec.maxResponseBytes ({limit} bytes, counted after "
        "decompression); ask for smaller pages (pagination.pageSize) or raise spec.maxResponseBytes"
    )


class _Inflater:
    """Inflates a gzip/deflate body piece by piece, never beyond ``limit`` bytes in all."""

    def __init__(self, encoding: str, limit: int) -> None:
        self.wbits = _INFLATE[encoding]
        self.deflate = encoding == "deflate"
        self.d = zlib.decompressobj(self.wbits)
        self.limit = limit
        self.out: list[bytes] = []
        self.size = 0
        self.first = True

    def feed(self, data: bytes) -> None:
        if self.first and self.deflate and data:
            self.first = False
            if data[0] & 0x0F != 8:  # "deflate" sent raw, without the zlib header (as httpx accepts)
                self.d = zlib.decompressobj(-zlib.MAX_WBITS)
        while data:
            if self.d.eof:
                return  # trailing garbage after the stream: ignored, as httpx does
            piece = self.d.decompress(data, self.limit - self.size + 1)
            self.size += len(piece)
            if self.size > self.limit:
                raise too_large(self.limit)
            self.out.append(piece)
            data = self.d.unconsumed_tail

    def result(self) -> bytes:
        if not self.d.eof:
            self.feed(self.d.flush())
        return b"".join(self.out)


async def _read_body(
    resp: aiohttp.ClientResponse, raw_headers: list[tuple[bytes, bytes]], limit: int | None
) -> tuple[bytes, list[tuple[bytes, bytes]]]:
    """The body (inflated if gzip/deflate and a limit is set) and the headers httpx should see."""
    if limit is None:
        return await resp.read(), raw_headers
    encoding = resp.headers.get("content-encoding", "").strip().lower()
    inflater = _Inflater(encoding, limit) if encoding in _INFLATE else None
    chunks: list[bytes] = []
    size = 0
    try:
        async for chunk in resp.content.iter_chunked(_READ_CHUNK):
            size += len(chunk)
            if size > limit:
                raise too_large(limit)
            if inflater is not None:
                inflater.feed(chunk)
            else:
                chunks.append(chunk)
        if inflater is None:
            return b"".join(chunks), raw_headers
        body = inflater.result()
    except zlib.error as e:
        raise aiohttp.ClientPayloadError(f"cannot decode the {encoding} body: {e}") from None
    # httpx must not inflate it again.
    headers = [(k, v) for k, v in raw_headers if k.lower() not in (b"content-encoding", b"content-length")]
    return body, headers


def _text(value: bytes) -> str:
    try:
        return value.decode("utf-8")
    except UnicodeDecodeError:
        return value.decode("latin-1")


@functools.lru_cache(maxsize=2)
def shared_ssl_context(verify: bool) -> ssl.SSLContext:
    """One verifying (or non-verifying) context for every client of the process."""
    return httpx.create_ssl_context(verify=verify)
class PolicyResolver(AbstractResolver):
    """aiohttp's default resolver (``loop.getaddrinfo`` in a thread), each answer checked against
    the policy: a denied one raises :class:`DestinationDeniedError` before any connection is made.
    Hosts in ``exempt`` (the proxies) are not checked."""

    def __init__(self, policy: DestinationPolicy, exempt: set[str]) -> None:
        self._policy = policy
        self._exempt = exempt
        self._inner = DefaultResolver()

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        answers = await self._inner.resolve(host, port, family)
        if host.lower() not in self._exempt:
            self._policy.check_addresses(host, [a["host"] for a in answers])
        return answers

    async def close(self) -> None:
        await self._inner.close()


class AiohttpTransport(httpx.AsyncBaseTransport):
    """Send httpx requests over one :class:`aiohttp.ClientSession`, created on first use inside
    the running event loop.

    ``verify`` is what httpx's own ``verify=`` takes (True, False or an :class:`ssl.SSLContext`);
    ``max_connections`` bounds the open connections (aiohttp's ``TCPConnector(limit=...)``);
    ``max_body_bytes`` bounds each body (see the module's docstring; None: no bound).
    """

    def __init__(
        self,
        *,
        verify: bool | ssl.SSLContext = True,
        max_connections: int = 100,
        policy: DestinationPolicy | None = None,
        max_body_bytes: int | None = None,
    ) -> None:
        self._max_body_bytes = max_body_bytes
        # The same context httpx would build (certifi, SSL_CERT_FILE / SSL_CERT_DIR, or the given one),
        # built once per process: loading the CA bundle costs ~50 ms of CPU, and a client per sync paid it.
        self._ssl = verify if isinstance(verify, ssl.SSLContext) else shared_ssl_context(verify)
        self._max_connections = max_connections
        self._policy = policy
        self._exempt: set[str] = set()
        self._session: aiohttp.ClientSession | None = None
        self._proxies: dict[tuple[str, str, int | None], tuple[yarl.URL | None, aiohttp.BasicAuth | None]] = {}

    def _get_session(self) -> aiohttp.ClientSession:
        session = self._session
        if session is None or session.closed:
            resolver = PolicyResolver(self._policy, self._exempt) if self._policy is not None else None
            connector = aiohttp.TCPConnector(limit=self._max_connections, ssl=self._ssl, resolver=resolver)
            session = self._session = aiohttp.ClientSession(
                connector=connector,
                # httpx decodes the body (Content-Encoding) as it would with its own transport.
                auto_decompress=False,
                # httpx keeps the cookies; proxies are looked up below, without aiohttp's per-request
                # .netrc lookup (trust_env=True would read ~/.netrc in a thread for every request).
                cookie_jar=aiohttp.DummyCookieJar(),
                trust_env=False,
                timeout=aiohttp.ClientTimeout(total=None),
                # h11 (httpx) accepts long header lines; aiohttp's default limit is 8 KiB.
                max_line_size=65536,
                max_field_size=65536,
            )
        return session

    def _proxy_for(self, url: yarl.URL) -> tuple[yarl.URL | None, aiohttp.BasicAuth | None]:
        key = (url.scheme, url.host or "", url.port)
        found = self._proxies.get(key)
        if found is None:
            try:
                found = get_env_proxy_for_url(url)
            except LookupError:
                found = _NO_PROXY
            if found[0] is not None and found[0].host:
                self._exempt.add(found[0].host.lower())
            self._proxies[key] = found
        return found

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        session = self._get_session()
        url = yarl.URL(str(request.url), encoded=True)
        if url.user is not None or url.password is not None:
            url = url.with_user(None)  # httpx has already turned URL credentials into a header
        headers = [(_text(k), _text(v)) for k, v in request.headers.raw if k.lower() not in _SKIP_HEADERS]
        body = await request.aread()
        timeouts = request.extensions.get("timeout", {})
        timeout = aiohttp.ClientTimeout(
            total=None, sock_connect=timeouts.get("connect"), sock_read=timeouts.get("read")
        )
        proxy, proxy_auth = self._proxy_for(url)
        if self._policy is not None and url.host and proxy is None:
            self._policy.check(str(url))  # an IP-literal host never reaches the resolver
        kwargs: dict[str, Any] = {}
        if proxy is not None:
            kwargs["proxy"] = proxy
            kwargs["proxy_auth"] = proxy_auth
        try:
            async with session.request(
                request.method,
                url,
                headers=headers,
                data=body or None,
                allow_redirects=False,
                timeout=timeout,
                **kwargs,
            ) as resp:
                content, raw_headers = await _read_body(resp, list(resp.raw_headers), self._max_body_bytes)
                status = resp.status
                reason = resp.reason
        except DestinationDeniedError:
            raise
        except aiohttp.ConnectionTimeoutError as e:
            raise httpx.ConnectTimeout(str(e) or "connect timed out", request=request) from e
        except TimeoutError as e:  # aiohttp.ServerTimeoutError (sock_read) included
            raise httpx.ReadTimeout(str(e) or "read timed out", request=request) from e
        except aiohttp.ClientConnectorCertificateError as e:
            # Chained to the ssl error itself: the client finds SSLCertVerificationError in the chain.
            raise httpx.ConnectError(str(e), request=request) from e.certificate_error
        except (aiohttp.ClientProxyConnectionError, aiohttp.ClientHttpProxyError) as e:
            raise httpx.ProxyError(str(e), request=request) from e
        except aiohttp.ClientConnectorError as e:  # ClientSSLError and DNS errors included
            raise httpx.ConnectError(str(e), request=request) from e
        except aiohttp.ClientSSLError as e:
            raise httpx.ConnectError(str(e), request=request) from e
        except aiohttp.ServerDisconnectedError as e:
            raise httpx.RemoteProtocolError(str(e) or "server disconnected", request=request) from e
        except aiohttp.ClientPayloadError as e:
            raise httpx.ReadError(str(e), request=request) from e
        except (aiohttp.NonHttpUrlClientError, aiohttp.InvalidUrlClientError) as e:
            raise httpx.UnsupportedProtocol(str(e), request=request) from e
        except aiohttp.ClientResponseError as e:  # an unparsable response
            raise httpx.RemoteProtocolError(str(e), request=request) from e
        except aiohttp.ClientOSError as e:  # connection reset, broken pipe...
            raise httpx.ReadError(str(e) or type(e).__name__, request=request) from e
        except aiohttp.ClientConnectionError as e:
            raise httpx.ReadError(str(e) or type(e).__name__, request=request) from e
        except aiohttp.ClientError as e:
            raise httpx.TransportError(str(e) or type(e).__name__, request=request) from e
        extensions: dict[str, Any] = {"http_version": b"HTTP/1.1"}
        if reason:
            extensions["reason_phrase"] = reason.encode("ascii", "replace")
        return httpx.Response(
            status,
            headers=raw_headers,
            stream=httpx.ByteStream(content),
            request=request,
            extensions=extensions,
        )

    async def aclose(self) -> None:
        session, self._session = self._session, None
        if session is not None and not session.closed:
            await session.close()
            # Closing the sockets only schedules their teardown: give the loop a few turns so the
            # connections are really gone when aclose returns (httpx's anyio streams do the same).
            for _ in range(3):
                await asyncio.sleep(0)


def _httpx_asked() -> bool:
    """``HTTPSYNC_HTTP_TRANSPORT=httpx``: httpx's own transport instead of aiohttp."""
    return os.environ.get(TRANSPORT_ENV, "").strip().lower() == "httpx"


def default_transport(
    *,
    verify: bool | ssl.SSLContext = True,
    max_connections: int = 100,
    policy: DestinationPolicy | None = None,
    max_body_bytes: int | None = None,
) -> httpx.AsyncBaseTransport | None:
    """The transport of every outbound client (sources and sinks): :class:`AiohttpTransport`, or
    None (httpx's own) when the environment says ``HTTPSYNC_HTTP_TRANSPORT=httpx`` (then the
    policy's DNS check is the client's, before each request, not the resolver's, and the body
    limit is checked once the body is read)."""
    if _httpx_asked():
        return None
    return AiohttpTransport(
        verify=verify, max_connections=max_connections, policy=policy, max_body_bytes=max_body_bytes
    )


class _Shared(httpx.AsyncBaseTransport):
    """A transport several clients use: a client's ``aclose`` leaves it open (its pool closes it)."""

    def __init__(self, inner: httpx.AsyncBaseTransport) -> None:
        self.inner = inner

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        return await self.inner.handle_async_request(request)

    async def aclose(self) -> None:
        return None


class TransportPool:
    """One transport (one connection pool) per TLS setting and body limit for every client of a
    long-running process (the operator), so that a source's next sync reuses the connections of
    the last one instead of opening (and TLS-handshaking) new ones. Each source's own limits
    (``maxConcurrentRequests``, ``requestsPerSecond``) are its client's, not the pool's; the pool
    only bounds the connections open in all (``max_connections``). With ``HTTPSYNC_HTTP_TRANSPORT=httpx``
    there is no pool (each client its own httpx transport)."""

    def __init__(self, *, policy: DestinationPolicy | None = None, max_connections: int = 512) -> None:
        self.policy = policy
        self.max_connections = max_connections
        self._transports: dict[tuple[object, int | None], _Shared] = {}

    def get(self, *, verify: bool | ssl.SSLContext, max_body_bytes: int | None) -> httpx.AsyncBaseTransport | None:
        if _httpx_asked():
            return None
        # A CA bundle's context is built once per bundle (engine.client), so its identity is the key.
        key = (verify if isinstance(verify, bool) else id(verify), max_body_bytes)
        shared = self._transports.get(key)
        if shared is None:
            inner = AiohttpTransport(
                verify=verify, max_connections=self.max_connections, policy=self.policy, max_body_bytes=max_body_bytes
            )
            shared = self._transports[key] = _Shared(inner)
        return shared

    async def aclose(self) -> None:
        transports, self._transports = list(self._transports.values()), {}
        for t in transports:
            await t.inner.aclose()

