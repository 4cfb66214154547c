"""The generated CRDs on a real kube-apiserver: CEL rules, defaults, printer columns, names, status.

Uses the ``kube`` fixture of tests/conftest.py (``.kubectl(*args, input=, check=)``, ``.new_namespace()``).
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path
from typing import Any

import pytest

from httpsync.api import models as m
from tests.conftest import wait_established

pytestmark = pytest.mark.cluster

CRDS = Path(__file__).resolve().parents[2] / "crds"
CRD_NAMES = ("crd/httpsources.httpsync.io", "crd/httpendpointmappings.httpsync.io")


def source(name: str, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": m.API_VERSION,
        "kind": "HttpSource",
        "metadata": {"name": name},
        "spec": {"baseUrl": "https://api.example.com", **spec},
    }


def mapping(name: str, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": m.API_VERSION,
        "kind": "HttpEndpointMapping",
        "metadata": {"name": name},
        "spec": {
            "sourceRef": {"name": "src"},
            "kind": "/users",
            "mappings": {"identifier": ".id", "blueprint": '"user"'},
            **spec,
        },
    }


@pytest.fixture
def ns(kube: Any) -> str:
    """A fresh namespace, with both CRDs applied and Established (server-side apply is idempotent)."""
    kube.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(CRDS))
    wait_established(kube)
    namespace = kube.new_namespace()
    # Discovery can lag right after Established: wait until the resources are served.
    deadline = time.monotonic() + 30
    while kube.kubectl("get", "httpsources,httpendpointmappings", "-n", namespace, check=False).returncode:
        assert time.monotonic() < deadline, "httpsync.io resources are not served"
        time.sleep(0.5)
    return namespace


def create(kube: Any, ns: str, obj: dict[str, Any], check: bool = True):
    return kube.kubectl("create", "-n", ns, "-f", "-", input=json.dumps(obj), check=check)


def get(kube: Any, ns: str, what: str) -> dict[str, Any]:
    return json.loads(kube.kubectl("get", "-n", ns, what, "-o", "json").stdout)


def test_crds_are_established(kube: Any, ns: str) -> None:
    for name in CRD_NAMES:
        crd = json.loads(kube.kubectl("get", name, "-o", "json").stdout)
        conditions = {c["type"]: c["status"] for c in crd["status"]["conditions"]}
        assert conditions.get("Established") == "True" and conditions.get("NamesAccepted") == "True"
        assert crd["status"]["acceptedNames"]["categories"] == ["httpsync"]


INVALID = [
    pytest.param(
        source("bearer", auth={"type": "bearer"}),
        "auth.secretRef is required unless auth.type is none",
        id="bearer-without-secretRef",
    ),
    pytest.param(
        source("oauth", auth={"type": "oauth2ClientCredentials", "secretRef": {"name": "oauth"}}),
        "auth.tokenUrl is required for auth.type oauth2ClientCredentials",
        id="oauth2-without-tokenUrl",
    ),
    pytest.param(
        source("cursor", pagination={"type": "cursor"}),
        "pagination.type cursor needs cursorPath",
        id="cursor-without-cursorPath",
    ),
    pytest.param(source("interval", interval="5 minutes"), "spec.interval", id="bad-interval"),
    # One object with interval 0s made about 7 syncs and 27 status patches a second.
    pytest.param(source("zero", interval="0s"), "interval must be at least 30s", id="interval-0s"),
    pytest.param(source("short", interval="29s999ms"), "interval must be at least 30s", id="interval-below-30s"),
    pytest.param(
        source("capped", retry={"backoffSeconds": 2, "maxBackoffSeconds": 1}),
        "retry.maxBackoffSeconds must be at least retry.backoffSeconds",
        id="retry-cap-below-backoff",
    ),
    # An integer 0 passes the schema's fractional `minimum` on the API server: the floor is a CEL rule.
    pytest.param(
        source("nobackoff", retry={"backoffSeconds": 0}),
        "retry.backoffSeconds must be at least 0.001",
        id="retry-0-backoff",
    ),
    pytest.param(
        source("tinybackoff", retry={"backoffSeconds": 0.0001}),
        "retry.backoffSeconds must be at least 0.001",
        id="retry-tiny-backoff",
    ),
    pytest.param(
        mapping("placeholder", kind="/projects/{x}/issues"),
        "kind has {placeholders}: give each one in selector.pathParameters",
        id="placeholder-without-pathParameters",
    ),
    pytest.param(
        source("both", auth={"type": "apiKey", "secretRef": {"name": "k"}, "header": "X", "queryParam": "k"}),
        "set either auth.header or auth.queryParam, not both",
        id="apiKey-header-and-queryParam",
    ),
    pytest.param(
        source("custom", auth={"type": "custom"}),
        "auth.custom is required for auth.type custom, and only valid for it",
        id="custom-without-custom",
    ),
    pytest.param(
        source(
            "custombody",
            auth={
                "type": "custom",
                "custom": {
                    "request": {"url": "/login", "body": {"a": 1}, "bodyForm": {"a": "1"}},
                    "template": {"headers": {"A": ".t"}},
                },
            },
        ),
        "auth.custom.request: set body (JSON) or bodyForm (form-encoded), not both",
        id="custom-body-and-bodyForm",
    ),
    pytest.param(
        source("customtemplate", auth={"type": "custom", "custom": {"request": {"url": "/l"}, "template": {}}}),
        "auth.custom.template needs at least one of headers, queryParams or body",
        id="custom-empty-template",
    ),
    pytest.param(
        mapping("itemsname", itemsToParseName="member"),
        "itemsToParseName and itemsToParseTopLevelTransform need itemsToParse",
        id="itemsToParseName-without-itemsToParse",
    ),
    pytest.param(
        mapping("badenum", selector={"method": "FETCH"}),
        "spec.selector.method",
        id="bad-enum",
    ),
]


@pytest.mark.parametrize(("obj", "message"), INVALID)
def test_server_rejects(kube: Any, ns: str, obj: dict[str, Any], message: str) -> None:
    proc = create(kube, ns, obj, check=False)
    assert proc.returncode != 0, f"accepted: {json.dumps(obj)}"
    assert message in proc.stderr, proc.stderr
    # The models reject the same objects (the CEL rules are stated once, with a Python twin),
    # so the CLI's local mode refuses what the cluster refuses, with the same words.
    model = m.HttpSource if obj["kind"] == "HttpSource" else m.HttpEndpointMapping
    with pytest.raises(ValueError) as err:
        model.model_validate(obj)
    if not message.startswith("spec."):
        assert message in str(err.value)


def test_server_accepts_the_valid_variants(kube: Any, ns: str) -> None:
    create(kube, ns, source("bearer", auth={"type": "bearer", "secretRef": {"name": "token"}}))
    create(kube, ns, source("cursor", pagination={"type": "cursor", "cursorPath": ".next"}))
    create(
        kube,
        ns,
        mapping(
            "placeholder",
            kind="/projects/{x}/issues",
            selector={"pathParameters": {"x": {"endpoint": "/projects"}}, "body": {"any": ["json", 1]}},
        ),
    )
    body = get(kube, ns, "hem/placeholder")["spec"]["selector"]["body"]
    assert body == {"any": ["json", 1]}, "the free-form body must not be pruned"
    custom = {
        "request": {"url": "/login", "bodyForm": {"user": "${user}"}},
        "template": {"queryParams": {"session": ".session"}},
        "reauthenticateInterval": "50m",
        "expiresInPath": ".expires_in",
    }
    create(kube, ns, source("custom", auth={"type": "custom", "secretRef": {"name": "login"}, "custom": custom}))
    assert get(kube, ns, "httpsource/custom")["spec"]["auth"]["custom"]["template"] == custom["template"]
    query = {"combinator": '"and"', "rules": [{"property": '"$identifier"', "operator": '"="', "value": ".team"}]}
    create(
        kube,
        ns,
        mapping(
            "ocean",
            itemsToParse=".members",
            itemsToParseName="member",
            itemsToParseTopLevelTransform=True,
            selector={"singleObject": True},
            mappings={"identifier": ".id", "blueprint": '"user"', "team": query, "relations": {"owner": query}},
        ),
    )
    spec = get(kube, ns, "hem/ocean")["spec"]
    assert spec["mappings"]["team"] == query and spec["mappings"]["relations"] == {"owner": query}, "pruned"
    for obj in (get(kube, ns, "httpsource/custom"), get(kube, ns, "hem/ocean")):
        model = m.HttpSource if obj["kind"] == "HttpSource" else m.HttpEndpointMapping
        model.model_validate({k: obj[k] for k in ("apiVersion", "kind", "spec")} | {"metadata": {"name": "x"}})


def test_server_accepts_intervals_from_the_minimum_on(kube: Any, ns: str) -> None:
    for name, interval in (("thirty", "30s"), ("half-minute", "0.5m"), ("mixed", "1h30m"), ("ms", "30000ms")):
        create(kube, ns, source(name, interval=interval))
        assert m.HttpSourceSpec.model_validate(source(name, interval=interval)["spec"]).interval_seconds >= 30
    create(kube, ns, source("tiny-backoff", retry={"backoffSeconds": 0.001, "maxBackoffSeconds": 0.001}))


def without_empty(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: without_empty(v) for k, v in value.items() if v not in ({}, [])}
    return value


def test_server_fills_in_the_model_defaults(kube: Any, ns: str) -> None:
    create(kube, ns, source("minimal"))
    create(kube, ns, mapping("minimal"))
    spec = get(kube, ns, "httpsource/minimal")["spec"]
    assert spec["pagination"]["pageSize"] == 100 and spec["interval"] == "1h"
    assert spec["auth"] == {"type": "none"} and spec["suspend"] is False
    assert spec == without_empty(m.HttpSourceSpec.model_validate(spec).to_wire())
    hem = get(kube, ns, "httpendpointmapping/minimal")["spec"]
    assert hem["selector"] == {"query": "true", "method": "GET", "singleObject": False}
    assert hem["deletionPolicy"] == "Delete" and hem["deletionGuard"] == {
        "maxDeletePercent": 50,
        "disabled": False,
    }
    assert hem == without_empty(m.HttpEndpointMappingSpec.model_validate(hem).to_wire())


def table(kube: Any, ns: str, *args: str) -> list[dict[str, str]]:
    """``kubectl get`` as rows of {HEADER: cell}; cells are cut where the header's columns start."""
    head, *rows = kube.kubectl("get", *args, "-n", ns).stdout.splitlines()
    columns = [(c.group(), c.start()) for c in re.finditer(r"\S+(?: \S+)*", head)]
    ends = [start for _, start in columns[1:]] + [None]
    return [{name: row[start:end].strip() for (name, start), end in zip(columns, ends, strict=True)} for row in rows]


SOURCE_COLUMNS = ["NAME", "READY", "STATUS", "ENDPOINTS", "LAST SYNC", "AGE"]
SOURCE_WIDE = [*SOURCE_COLUMNS[:-1], "URL", "INTERVAL", "SUSPENDED", "NEXT SYNC", "MESSAGE", "AGE"]
MAPPING_COLUMNS = ["NAME", "SOURCE", "ENDPOINT", "READY", "ENTITIES", "LAST SYNC", "AGE"]
MAPPING_WIDE = [*MAPPING_COLUMNS[:-1], "STATUS", "FETCHED", "ERRORS", "DURATION", "AGE"]


def test_printer_columns(kube: Any, ns: str) -> None:
    create(kube, ns, source("src"))
    create(kube, ns, mapping("users"))
    (row,) = table(kube, ns, "httpsources")
    assert list(row) == SOURCE_COLUMNS and row["NAME"] == "src"
    (row,) = table(kube, ns, "httpsources", "-o", "wide")
    assert list(row) == SOURCE_WIDE
    assert (row["URL"], row["INTERVAL"], row["SUSPENDED"]) == ("https://api.example.com", "1h", "false")
    (row,) = table(kube, ns, "hem")
    assert list(row) == MAPPING_COLUMNS
    assert (row["NAME"], row["SOURCE"], row["ENDPOINT"]) == ("users", "src", "/users")
    (row,) = table(kube, ns, "hem", "-o", "wide")
    assert list(row) == MAPPING_WIDE


def test_category_and_short_names(kube: Any, ns: str) -> None:
    create(kube, ns, source("src"))
    create(kube, ns, mapping("users"))
    names = set(kube.kubectl("get", "httpsync", "-n", ns, "-o", "name").stdout.split())
    assert names == {"httpsource.httpsync.io/src", "httpendpointmapping.httpsync.io/users"}
    assert kube.kubectl("get", "hsrc", "-n", ns, "-o", "name").stdout.split() == ["httpsource.httpsync.io/src"]
    assert kube.kubectl("get", "hem", "-n", ns, "-o", "name").stdout.split() == [
        "httpendpointmapping.httpsync.io/users"
    ]
    assert kube.kubectl("get", "httpsource", "src", "-n", ns, "-o", "name").stdout.strip()


READY_CONDITION = {
    "type": "Ready",
    "status": "True",
    "reason": "Succeeded",
    "message": "1/1 endpoints synced",
    "lastTransitionTime": "2025-01-02T03:04:05Z",
    "observedGeneration": 1,
}


def test_status_subresource(kube: Any, ns: str) -> None:
    create(kube, ns, source("src"))
    before = get(kube, ns, "hsrc/src")
    status = {"observedGeneration": 1, "conditions": [READY_CONDITION], "endpoints": "1/1", "summary": "Succeeded"}
    kube.kubectl(
        "patch", "hsrc", "src", "-n", ns, "--subresource=status", "--type=merge",
        "-p", json.dumps({"status": status, "spec": {"interval": "5m"}}),
    )  # fmt: skip
    after = get(kube, ns, "hsrc/src")
    assert after["spec"] == before["spec"], "a status patch must not change spec"
    assert after["metadata"]["generation"] == before["metadata"]["generation"]
    assert after["status"]["endpoints"] == "1/1"
    assert after["status"]["conditions"][0]["message"] == "1/1 endpoints synced"
    (row,) = table(kube, ns, "hsrc", "src")
    assert (row["READY"], row["STATUS"], row["ENDPOINTS"]) == ("True", "Succeeded", "1/1")
    (row,) = table(kube, ns, "hsrc", "src", "-o", "wide")
    assert row["MESSAGE"] == "1/1 endpoints synced"

    kube.kubectl(
        "patch", "hsrc", "src", "-n", ns, "--type=merge",
        "-p", json.dumps({"spec": {"interval": "5m"}, "status": {"endpoints": "9/9"}}),
    )  # fmt: skip
    patched = get(kube, ns, "hsrc/src")
    assert patched["spec"]["interval"] == "5m"
    assert patched["metadata"]["generation"] == before["metadata"]["generation"] + 1
    assert patched["status"] == after["status"], "a spec patch must not change status"


def test_status_is_pruned_to_the_schema(kube: Any, ns: str) -> None:
    create(kube, ns, mapping("users"))
    status = {
        "entityCount": 3,
        "lastSync": {"outcome": "Succeeded", "itemsFetched": 4, "mappingErrors": {"count": 1}},
        "kopfHandlerResult": {"ignored": True},
    }
    kube.kubectl(
        "patch",
        "hem",
        "users",
        "-n",
        ns,
        "--subresource=status",
        "--type=merge",
        "-p",
        json.dumps({"status": status}),
    )
    got = get(kube, ns, "hem/users")["status"]
    assert "kopfHandlerResult" not in got
    assert got["lastSync"]["requests"] == 0 and got["lastSync"]["mappingErrors"] == {"count": 1}
    assert m.HttpEndpointMappingStatus.model_validate(got).entity_count == 3
    (row,) = table(kube, ns, "hem", "users", "-o", "wide")
    assert (row["ENTITIES"], row["FETCHED"], row["ERRORS"], row["DURATION"]) == ("3", "4", "1", "0")
