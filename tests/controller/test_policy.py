from __future__ import annotations

import pytest

from httpsync.errors import DestinationDeniedError
from httpsync.http.policy import DestinationPolicy


def test_metadata_addresses_denied_by_default() -> None:
    p = DestinationPolicy()
    for url in (
        "http://169.254.169.254/latest/meta-data/",
        "http://metadata.google.internal/computeMetadata/v1/",
        "http://[fd00:ec2::254]/",
        "http://100.100.100.200/",
    ):
        with pytest.raises(DestinationDeniedError, match="denied by the operator's destination policy"):
            p.check(url)
    p.check("http://127.0.0.1:8080/api")  # loopback is not denied by default


def test_allow_list_by_host_pattern_and_cidr() -> None:
    p = DestinationPolicy(allow=["*.example.com", "127.0.0.0/8"], resolve=False)
    p.check("https://api.example.com/v1")
    p.check("http://127.0.0.1:9000/")
    with pytest.raises(DestinationDeniedError, match="not in the operator's destination allow list"):
        p.check("https://example.org/")
    with pytest.raises(DestinationDeniedError):
        p.check("https://example.com/")  # *.example.com does not cover the apex


async def test_hostname_resolving_to_denied_address_is_denied() -> None:
    p = DestinationPolicy(deny=["127.0.0.0/8"])
    with pytest.raises(DestinationDeniedError):
        await p.check_resolved("http://localhost:8080/")  # the DNS answers (off the event loop)
    with pytest.raises(DestinationDeniedError):
        p.check("http://localhost:8080/")  # and, once known, by the cheap check too
