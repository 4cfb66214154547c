"""What redaction costs: registering a secret, and masking a message, an error body and a log line
with 0 to 1,000 registered secrets (every tenant's credentials and tokens in one operator).

    .venv/bin/python -m bench.bench_redact [--repeat 2000]

Not part of the test suite: nothing here asserts a timing.
"""

from __future__ import annotations

import argparse
import base64
import secrets
import time

from httpsync.http import redact as module
from httpsync.http.redact import redact, register_secret

MESSAGE = "GET https://api.example.com/v1/items?page=3&size=100 returned 400 Bad Request: " + "x" * 200
BODY = " ".join(f"word{i} value-{i * 7} {{'k': {i}}}" for i in range(400))  # ~8 KB of varied text


def per_call(fn: object, text: str, repeat: int) -> float:
    start = time.perf_counter()
    for _ in range(repeat):
        fn(text)  # type: ignore[operator]
    return (time.perf_counter() - start) / repeat * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.bench_redact", description=__doc__.split("\n")[0])
    parser.add_argument("--repeat", type=int, default=2000)
    args = parser.parse_args()
    token = ".".join(base64.urlsafe_b64encode(secrets.token_bytes(n)).decode().rstrip("=") for n in (36, 600, 256))
    start = time.perf_counter()
    register_secret(token)
    print(f"register a {len(token)}-character token: {(time.perf_counter() - start) * 1e3:.2f} ms")
    print(f"{'secrets':>8}  {'message (279 chars)':>20}  {'body (~8 KB)':>14}")
    for n in (1, 10, 100, 1000):
        while len(module._secrets) < n:
            register_secret(secrets.token_urlsafe(24))
        m = per_call(redact, MESSAGE, args.repeat)
        b = per_call(redact, BODY, max(1, args.repeat // 20))
        print(f"{n:>8}  {m:>17.1f} us  {b:>11.0f} us")


if __name__ == "__main__":
    main()
