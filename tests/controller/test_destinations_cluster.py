"""The operator applies the destination policy to every spelling of a metadata address, to a
source's own sink URL and to its OAuth2 tokenUrl (issue 11 §4), on the real kube-apiserver."""

from __future__ import annotations

from typing import Any

import pytest

from tests.controller.harness import (  # noqa: F401  (api_fixture, operator_fixture: the fixtures)
    TOKEN,
    ItemsApi,
    Operator,
    api_fixture,
    apply,
    condition,
    mapping,
    operator_fixture,
    ready,
    secret,
    source,
    users,
    wait_for,
)

pytestmark = pytest.mark.cluster

OAUTH = {
    "type": "oauth2ClientCredentials",
    "tokenUrl": "http://[64:ff9b::a9fe:a9fe]/oauth/token",  # NAT64 spelling of 169.254.169.254
    "secretRef": {"name": "oauth-creds"},
}
SINK = {"type": "webhook", "webhook": {"url": "http://[::ffff:169.254.169.254]/hook"}}


def test_every_url_a_source_names_goes_through_the_policy(kube: Any, api: ItemsApi, operator: Operator) -> None:
    ns = kube.new_namespace("dest")
    api.set_items(f"/{ns}/users", users(ns, 2))
    apply(
        kube, ns,
        secret("api-creds", token=TOKEN),
        secret("oauth-creds", clientId="id", clientSecret="client-secret-value"),
        source("mapped", "http://[::ffff:169.254.169.254]/latest"),
        source("decimal", "http://2852039166/latest"),
        source("token", api.url, auth=OAUTH),
        source("sink", api.url, sink=SINK),
        mapping("m1", "mapped", f"/{ns}/users"),
        mapping("m2", "token", f"/{ns}/users"),
        mapping("m3", "sink", f"/{ns}/users"),
    )  # fmt: skip
    for name in ("mapped", "decimal", "token", "sink"):
        obj = wait_for(ready(kube, ns, f"hsrc/{name}", "False", "DestinationDenied"), name, operator=operator)
        assert condition(obj, "Stalled")["status"] == "True", name
        assert "denied by the operator's destination policy" in condition(obj, "Ready")["message"], name
    for name in ("m1", "m2", "m3"):
        wait_for(ready(kube, ns, f"hem/{name}", "False", "DestinationDenied"), name, operator=operator)
    assert api.count(f"/{ns}/users") == 0, "nothing is fetched for a tokenUrl or a sink the policy refuses"
