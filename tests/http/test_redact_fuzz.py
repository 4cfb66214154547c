"""Secrets never leak, whatever their characters: a corpus of secrets with `` +/=&%"\\`` and unicode,
sent every way a source sends credentials (query parameter, header, bearer, basic, OAuth2 form and
basic client auth) to a loopback server that echoes the request back in its error bodies (raw,
URL-encoded, JSON-escaped, HTML-escaped, straddling the cut of the message) and in redirects, and
every place a secret can surface: the error message, the exception text, the HTTP libraries' logs,
the CLI's ``-vv`` logs and ``-o json`` output.

Every secret of the corpus carries a marker (``Zx<n>Q``) that no other text has: it survives every
percent, JSON or HTML encoding, so finding it anywhere is a leak, even of a prefix.
"""

from __future__ import annotations

import asyncio
import base64
import html
import json
import logging
import re
import sys
from pathlib import Path
from typing import Any
from urllib.parse import quote, quote_plus

import httpx
import pytest
from aiohttp import web

from httpsync.engine.client import SourceClient
from httpsync.errors import EngineError
from httpsync.http.redact import redact, register_secret
from httpsync.http.responses import body_start, exception_text, short
from tests.loopback import LoopbackServer
from tests.testapi.fixtures import StaticSecrets, source_spec

MARKER = re.compile(r"Zx\d+Q")
TAILS = [
    " +/=&y",
    "%2B%2F%25 raw-percent",
    '"quoted" \\back\\slash',
    "pässwörd ☃ 秘密 🙂",
    "a+b=c&d=e/f?g#h",
    "  two  spaces\tand tab",
    "<tag>&amp;'single'",
    "====",
]
CORPUS = [f"Zx{i}Q{tail}" for i, tail in enumerate(TAILS)]
PAD = "p" * 190  # puts the echoed secret across the 200-character cut of error messages


def leaks(text: str) -> list[str]:
    return MARKER.findall(text)


def b64(pair: str) -> str:
    return base64.b64encode(pair.encode()).decode()


class Echo(LoopbackServer):
    """Answers 400 with the request echoed in the encoding ``?echo=`` names (the query's own form
    ``raw``, ``decoded``, ``json``, ``html``, ``pad``); ``/redirect-away`` redirects to another host
    with the credentials of the request in the Location; ``/token`` is an echoing token endpoint."""

    def __init__(self) -> None:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        super().__init__(app)

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        body = (await request.read()).decode("utf-8", "replace")
        raw = f"{request.method} {request.raw_path} {dict(request.headers)} {body}"
        decoded = f"{dict(request.query)} {request.headers.get('Authorization')} {request.headers.get('X-API-Key')}"
        if request.path == "/redirect-away":
            auth = request.headers.get("Authorization", "") + request.headers.get("X-API-Key", "")
            raise web.HTTPFound(f"http://elsewhere.invalid/{request.raw_path}&echo={auth}")
        mode = request.query.get("echo", "raw")
        if mode == "decoded":
            text = decoded
        elif mode == "json":
            text = json.dumps({"request": raw, "decoded": decoded})
        elif mode == "html":
            text = f"<pre>{html.escape(raw)} {html.escape(decoded)}</pre>"
        elif mode == "pad":
            text = PAD + decoded
        else:
            text = raw
        return web.Response(status=400, text=text)


@pytest.fixture
async def echo() -> Any:
    async with Echo() as server:
        yield server


def auth_cases(secret: str, token_url: str) -> list[tuple[str, dict[str, Any], dict[str, dict[str, str]]]]:
    creds = {"s": {"token": secret, "apiKey": secret, "username": secret, "password": secret}}
    creds["s"] |= {"clientId": "client-1", "clientSecret": secret}
    ref = {"secretRef": {"name": "s"}}
    return [
        ("query", {"type": "apiKey", "queryParam": "k", **ref}, creds),
        ("header", {"type": "apiKey", **ref}, creds),
        ("bearer", {"type": "bearer", **ref}, creds),
        ("basic", {"type": "basic", **ref}, creds),
        ("oauth-form", {"type": "oauth2ClientCredentials", "tokenUrl": token_url, **ref}, creds),
        (
            "oauth-basic",
            {"type": "oauth2ClientCredentials", "tokenUrl": token_url, "clientAuthMethod": "basic", **ref},
            creds,
        ),
    ]


@pytest.mark.parametrize("secret", CORPUS)
async def test_no_secret_reaches_a_message_or_a_log(echo: Echo, secret: str, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    seen: list[str] = []
    for name, auth, creds in auth_cases(secret, f"{echo.url}/token?echo=json"):
        spec = source_spec(echo.url, auth=auth, retry={"maxRetries": 0})
        async with await SourceClient.create(spec, StaticSecrets(creds)) as client:
            for mode in ("raw", "decoded", "json", "html", "pad"):
                path = "/redirect-away?a=1" if mode == "pad" and name == "header" else f"/items?echo={mode}"
                with pytest.raises(EngineError) as info:
                    await client.request("GET", client.url_for(path))
                seen += [f"{name}/{mode}: {info.value}", repr(info.value), exception_text(info.value)]
    seen.append(caplog.text)
    found = [s for s in seen if leaks(s) or b64(f"{secret}:{secret}") in s or b64(f"client-1:{secret}") in s]
    assert not found, found[:3]
    # The echo did carry the secret: what is asserted above is the masking, not a server that says nothing.
    assert any("***" in s for s in seen)


@pytest.mark.parametrize("secret", CORPUS)
def test_every_spelling_is_masked_in_text_and_exceptions(secret: str) -> None:
    register_secret(secret)
    spelled = [
        secret,
        quote(secret, safe=""),
        quote(secret),
        quote_plus(secret),
        quote(secret, safe="").lower(),
        json.dumps(secret)[1:-1],
        json.dumps(secret, ensure_ascii=False)[1:-1],
        html.escape(secret),
        str(httpx.URL("http://h/", params={"k": secret})).split("k=", 1)[1],
        httpx.Request("POST", "http://h/", data={"s": secret}).read().decode().split("s=", 1)[1],
        json.dumps(quote_plus(secret))[1:-1],
    ]
    for text in spelled:
        for framed in (f"before {text} after", f"{PAD}{text}{PAD}"):
            assert not leaks(redact(framed)), text
            assert not leaks(short(framed)), text
            assert not leaks(exception_text(RuntimeError(framed))), text
            assert not leaks(str(EngineError(framed))), text
            response = httpx.Response(500, content=framed.encode())
            assert not leaks(body_start(response)), text


def test_a_secret_across_the_cut_of_a_body_is_masked_whole() -> None:
    secret = "Zx99Q-straddling-the-cut"
    register_secret(secret)
    for offset in range(180, 205):
        response = httpx.Response(500, content=("x" * offset + secret + " tail").encode())
        text = body_start(response)
        assert not leaks(text), (offset, text)
    # past the read bound too: the part of a secret cut by the bound is not shown either
    big = httpx.Response(500, content=(" " * 9000 + secret).encode())
    assert not leaks(body_start(big))


# --------------------------------------------------------------------------- the CLI


SOURCE = """\
apiVersion: httpsync.io/v1alpha1
kind: HttpSource
metadata: {{name: echo{n}}}
spec:
  baseUrl: {url}
  auth: {{type: apiKey, queryParam: api_key, secretRef: {{name: creds{n}, key: key}}}}
  retry: {{maxRetries: 0}}
---
apiVersion: v1
kind: Secret
metadata: {{name: creds{n}}}
stringData:
  key: {secret}
---
apiVersion: httpsync.io/v1alpha1
kind: HttpEndpointMapping
metadata: {{name: items{n}}}
spec:
  sourceRef: {{name: echo{n}}}
  kind: /items?echo={mode}
  mappings: {{identifier: .id, blueprint: '"x"'}}
"""


async def run_cli(*args: str | Path) -> tuple[int, str, str]:
    exe = Path(sys.executable).parent / "httpsync"
    proc = await asyncio.create_subprocess_exec(
        str(exe), *map(str, args), stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    return proc.returncode or 0, out.decode(), err.decode()


async def test_the_cli_logs_and_json_output_carry_no_secret(echo: Echo, tmp_path: Path) -> None:
    docs = []
    for i, secret in enumerate(CORPUS):
        for mode in ("raw", "json", "pad"):
            quoted = json.dumps(secret, ensure_ascii=False)
            docs.append(SOURCE.format(n=f"{i}-{mode}", url=echo.url, secret=quoted, mode=mode))
    manifest = tmp_path / "m.yaml"
    manifest.write_text("---\n".join(docs))
    for args in (
        ["-vv", "sync", "-f", manifest, "--catalog", tmp_path / "c.db", "-o", "json"],
        ["-vv", "sync", "-f", manifest, "--catalog", tmp_path / "c.db"],
        ["-vv", "preview", "-f", manifest, "-o", "json"],
    ):
        code, out, err = await run_cli(*args)
        assert code == 1, (out, err)
        assert "HTTP Request: GET" in err  # httpx's own line is there, masked
        assert out.count("400 Bad Request") >= len(docs), out
        assert not leaks(out) and not leaks(err), (args, [line for line in (out + err).splitlines() if leaks(line)])


def test_with_many_secrets_each_is_still_found() -> None:
    from httpsync.http import redact as module

    many = [f"Zx{1000 + i}Q-tenant-token-{i:04d}-{'ab' * (i % 7)}" for i in range(120)]
    for s in many:
        register_secret(s)
    assert len(module._ordered) > module.INDEX_FROM  # the gram index is in use
    for s in many[::7]:
        for text in (f"token {s} end", f"q={quote_plus(s)}&x=1", json.dumps({"t": s})):
            assert not leaks(redact(text)), text
    register_secret("x-y-z-")  # no alphanumeric run of GRAM characters: always tried
    assert redact("got x-y-z- back") == "got *** back"
