"""The operator end to end: `httpsync run` in a subprocess against the real kube-apiserver,
syncing from a real loopback HTTP API into the embedded catalog; assertions read what a user
reads (`kubectl get`, conditions, events, the catalog)."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from typing import Any

import pytest

# Unused here (F401): the fixtures api and operator, and _free_port, which other test modules import from here.
from tests.controller.harness import (  # noqa: F401
    TOKEN,
    ItemsApi,
    Operator,
    _free_port,
    annotate,
    api_fixture,
    apply,
    condition,
    events_of,
    get,
    mapping,
    operator_fixture,
    owned,
    ready,
    secret,
    source,
    users,
    wait_for,
)

pytestmark = pytest.mark.cluster

# ---------------------------------------------------------------------------- tests


def test_sync_reports_status_columns_events_and_entities(kube: Any, api: ItemsApi, operator: Operator) -> None:
    ns = kube.new_namespace("op")
    api.token = TOKEN
    api.set_items(f"/{ns}/users", users(ns, 5))
    apply(
        kube, ns,
        secret("api-creds", token=TOKEN),
        source("api", api.url),
        mapping("users", "api", f"/{ns}/users"),
        mapping("team-b", "api", f"/{ns}/users", selector={"dataPath": ".data", "query": '.team == "b"'}),
    )  # fmt: skip
    hem = wait_for(ready(kube, ns, "hem/users"), "mapping users Ready", operator=operator)
    st = hem["status"]
    assert st["entityCount"] == 5 and st["observedGeneration"] == hem["metadata"]["generation"]
    assert st["lastSync"]["itemsFetched"] == 5 and st["lastSync"]["pages"] == 3
    assert st["lastSync"]["outcome"] == "Succeeded" and st["lastSuccessfulSyncTime"]
    assert [c["type"] for c in st["conditions"]] == ["Ready"], "Reconciling/Stalled present only while True"
    team_b = wait_for(ready(kube, ns, "hem/team-b"), "mapping team-b Ready", operator=operator)
    assert team_b["status"]["entityCount"] == 0 and team_b["status"]["lastSync"]["itemsFiltered"] == 5

    src = wait_for(ready(kube, ns, "hsrc/api"), "source Ready", operator=operator)
    assert src["status"]["endpoints"] == "2/2" and src["status"]["nextSyncTime"]
    assert {m["name"]: m["ready"] for m in src["status"]["mappings"]} == {"users": "True", "team-b": "True"}

    # What a person reads.
    out = kube.kubectl("get", "-n", ns, "httpsources").stdout
    assert out.split("\n")[0].split()[:4] == ["NAME", "READY", "STATUS", "ENDPOINTS"]
    assert "api" in out and "2/2" in out and "True" in out
    out = kube.kubectl("get", "-n", ns, "hem", "users").stdout.split("\n")
    assert out[0].split()[:5] == ["NAME", "SOURCE", "ENDPOINT", "READY", "ENTITIES"]
    assert out[1].split()[:5] == ["users", "api", f"/{ns}/users", "True", "5"]
    kube.kubectl("wait", "-n", ns, "--for=condition=Ready", "httpsource/api", "hem/users", "--timeout=5s")

    entities = owned(operator, ns)
    assert sorted(entities) == [f"{ns}-{i}" for i in range(5)]
    assert entities[f"{ns}-0"]["title"] == "User 0" and entities[f"{ns}-0"]["properties"] == {"team": "a"}
    assert any(e["reason"] == "Synced" and e["type"] == "Normal" for e in events_of(kube, ns, "users"))
    assert "httpsync_syncs_total" in operator.metrics()
    # The bearer token reached the API, and nowhere else.
    assert f"Bearer {TOKEN}" in api.auth_headers
    dump = kube.kubectl("get", "-n", ns, "hsrc,hem,events", "-o", "yaml").stdout
    assert TOKEN not in dump and TOKEN not in operator.log(tail=10**7)


def test_spec_change_and_requested_at_resync(kube: Any, api: ItemsApi, operator: Operator) -> None:
    ns = kube.new_namespace("op")
    api.token = TOKEN
    api.set_items(f"/{ns}/users", users(ns, 3))
    apply(kube, ns, secret("api-creds", token=TOKEN), source("api", api.url), mapping("users", "api", f"/{ns}/users"))
    wait_for(ready(kube, ns, "hem/users"), "first sync", operator=operator)

    # A new generation of the mapping: titles change in the catalog.
    changed = mapping("users", "api", f"/{ns}/users")
    changed["spec"]["mappings"]["title"] = '"Dr. " + .name'
    apply(kube, ns, changed)
    wait_for(
        lambda: owned(operator, ns).get(f"{ns}-0", {}).get("title") == "Dr. User 0",
        "the new title in the catalog", operator=operator,
    )  # fmt: skip
    hem = get(kube, ns, "hem/users")
    assert hem["status"]["observedGeneration"] == hem["metadata"]["generation"] == 2

    # An on-demand sync through the annotation, echoed in status.
    api.set_items(f"/{ns}/users", users(ns, 4))
    annotate(kube, ns, "hsrc/api", "2026-01-01T00:00:00Z")
    src = wait_for(
        lambda: (s := get(kube, ns, "hsrc/api"))["status"].get("lastHandledReconcileAt") == "2026-01-01T00:00:00Z"
        and s,
        "lastHandledReconcileAt", operator=operator,
    )  # fmt: skip
    assert condition(src, "Ready")["status"] == "True"
    wait_for(lambda: len(owned(operator, ns)) == 4, "the 4th entity", operator=operator)
    annotate(kube, ns, "hem/users", "req-2")
    wait_for(
        lambda: get(kube, ns, "hem/users")["status"].get("lastHandledReconcileAt") == "req-2",
        "mapping lastHandledReconcileAt", operator=operator,
    )  # fmt: skip


def test_failure_keeps_entities_then_recovers(kube: Any, api: ItemsApi, operator: Operator) -> None:
    ns = kube.new_namespace("op")
    path = f"/{ns}/users"
    api.token = TOKEN
    api.set_items(path, users(ns, 4))
    apply(kube, ns, secret("api-creds", token=TOKEN), source("api", api.url), mapping("users", "api", path))
    wait_for(ready(kube, ns, "hem/users"), "first sync", operator=operator)
    assert len(owned(operator, ns)) == 4

    api.set_items(path, [])  # would delete everything if a failure looked like success
    api.fail_status = 500
    try:
        annotate(kube, ns, "hsrc/api", "fail-1")
        hem = wait_for(ready(kube, ns, "hem/users", "False"), "Ready=False", operator=operator)
    finally:
        api.fail_status = None
    ready_c = condition(hem, "Ready")
    assert ready_c["reason"] == "HttpError", ready_c
    assert "500" in ready_c["message"] and "entities from the last successful sync are kept" in ready_c["message"]
    assert condition(hem, "Stalled") is None, "a server error is retried by the next sync, not stalled"
    assert len(owned(operator, ns)) == 4, "a failed sync deletes nothing"
    src = get(kube, ns, "hsrc/api")
    assert condition(src, "Ready")["status"] == "False" and src["status"]["endpoints"] == "0/1"
    assert any(e["type"] == "Warning" for e in events_of(kube, ns, "users"))

    api.set_items(path, users(ns, 2))
    annotate(kube, ns, "hsrc/api", "recover-1")
    hem = wait_for(ready(kube, ns, "hem/users"), "recovery", operator=operator)
    assert hem["status"]["entityCount"] == 2 and hem["status"]["lastSync"]["entitiesDeleted"] == 2
    assert sorted(owned(operator, ns)) == [f"{ns}-0", f"{ns}-1"]
    wait_for(
        lambda: any(e["reason"] == "Recovered" for e in events_of(kube, ns, "users")), "a Recovered event",
        operator=operator,
    )  # fmt: skip


def test_mapping_without_source_then_source_appears(kube: Any, api: ItemsApi, operator: Operator) -> None:
    ns = kube.new_namespace("op")
    api.set_items(f"/{ns}/users", users(ns, 2))
    apply(kube, ns, mapping("orphan", "later", f"/{ns}/users"))
    hem = wait_for(ready(kube, ns, "hem/orphan", "False", "SourceNotFound"), "SourceNotFound", operator=operator)
    assert "HttpSource later not found" in condition(hem, "Ready")["message"]
    apply(kube, ns, secret("api-creds", token=TOKEN), source("later", api.url))
    wait_for(ready(kube, ns, "hem/orphan"), "the mapping syncs once its source exists", operator=operator)
    # Deleting the source stops its loop (the finalizer is released) and the mapping says so.
    kube.kubectl("delete", "-n", ns, "hsrc/later", "--timeout=60s")
    wait_for(ready(kube, ns, "hem/orphan", "False", "SourceNotFound"), "SourceNotFound again", operator=operator)
    assert len(owned(operator, ns)) == 2, "deleting a source deletes no entity"


def test_stalled_on_invalid_jq_missing_secret_and_denied_destination(
    kube: Any, api: ItemsApi, operator: Operator
) -> None:
    ns = kube.new_namespace("op")
    api.set_items(f"/{ns}/users", users(ns, 2))
    bad = mapping("badjq", "api", f"/{ns}/users")
    bad["spec"]["mappings"]["title"] = ".name | ("
    apply(kube, ns, source("api", api.url), bad)  # note: no Secret yet
    src = wait_for(ready(kube, ns, "hsrc/api", "False", "SecretNotFound"), "SecretNotFound", operator=operator)
    assert condition(src, "Stalled")["status"] == "True"
    assert "api-creds" in condition(src, "Ready")["message"]

    apply(kube, ns, secret("api-creds", token=TOKEN))
    annotate(kube, ns, "hsrc/api", "after-secret")
    hem = wait_for(ready(kube, ns, "hem/badjq", "False", "InvalidJq"), "InvalidJq", operator=operator)
    msg = condition(hem, "Ready")["message"]
    assert "mappings.title" in msg and ".name | (" in msg
    assert condition(hem, "Stalled")["status"] == "True"

    apply(kube, ns, source("meta", "http://169.254.169.254/latest"))
    meta = wait_for(ready(kube, ns, "hsrc/meta", "False", "DestinationDenied"), "DestinationDenied", operator=operator)
    assert condition(meta, "Stalled")["status"] == "True"


def test_suspend_stops_syncing_until_resumed(kube: Any, api: ItemsApi, operator: Operator) -> None:
    ns = kube.new_namespace("op")
    path = f"/{ns}/users"
    api.set_items(path, users(ns, 2))
    apply(kube, ns, secret("api-creds", token=TOKEN), source("api", api.url), mapping("users", "api", path))
    wait_for(ready(kube, ns, "hem/users"), "first sync", operator=operator)
    apply(kube, ns, source("api", api.url, suspend=True))
    wait_for(ready(kube, ns, "hsrc/api", "True", "Suspended"), "Suspended", operator=operator)
    before = api.count(path)
    annotate(kube, ns, "hsrc/api", "while-suspended")
    time.sleep(3)  # a negative check: nothing may happen while suspended
    assert api.count(path) == before
    assert get(kube, ns, "hsrc/api")["status"].get("lastHandledReconcileAt") != "while-suspended"
    apply(kube, ns, source("api", api.url, suspend=False))
    wait_for(
        lambda: get(kube, ns, "hsrc/api")["status"].get("lastHandledReconcileAt") == "while-suspended",
        "the pending request handled after resume", operator=operator,
    )  # fmt: skip
    assert api.count(path) > before


def test_mapping_deletion_removes_entities_unless_kept(kube: Any, api: ItemsApi, operator: Operator) -> None:
    ns = kube.new_namespace("op")
    api.set_items(f"/{ns}/a", users(f"{ns}-a", 3))
    api.set_items(f"/{ns}/b", users(f"{ns}-b", 2))
    apply(
        kube, ns,
        secret("api-creds", token=TOKEN),
        source("api", api.url),
        mapping("a", "api", f"/{ns}/a"),
        mapping("b", "api", f"/{ns}/b", deletionPolicy="Keep"),
    )  # fmt: skip
    wait_for(lambda: len(owned(operator, ns)) == 5, "5 entities", operator=operator)
    kube.kubectl("delete", "-n", ns, "hem/a", "hem/b", "--timeout=60s")
    left = owned(operator, ns)
    assert sorted(left) == [f"{ns}-b-0", f"{ns}-b-1"], "Delete removes a's entities; Keep keeps b's"


def test_events_are_reported_by_httpsync(kube: Any, api: ItemsApi, operator: Operator) -> None:
    ns = kube.new_namespace("op")
    api.token = TOKEN
    api.set_items(f"/{ns}/users", users(ns, 1))
    apply(kube, ns, secret("api-creds", token=TOKEN), source("api", api.url), mapping("users", "api", f"/{ns}/users"))

    def synced_events() -> dict[str, dict[str, Any]]:
        items = kube.get_json("events", "-n", ns, "--field-selector", "source=httpsync,reason=Synced")["items"]
        found = {e["involvedObject"]["kind"]: e for e in items}
        return found if {"HttpSource", "HttpEndpointMapping"} <= set(found) else {}

    found = wait_for(synced_events, "Synced events found by --field-selector source=httpsync", operator=operator)
    assert (found["HttpSource"]["involvedObject"]["name"], found["HttpEndpointMapping"]["involvedObject"]["name"]) == (
        "api",
        "users",
    )
    for event in found.values():
        assert event["source"]["component"] == "httpsync" and event["reportingComponent"] == "httpsync", event
        assert event["type"] == "Normal", event
    # Nothing of the operator's is reported by kopf; events.k8s.io/v1 names httpsync as the reporting controller.
    assert kube.get_json("events", "-n", ns, "--field-selector", "source=kopf")["items"] == []
    new_api = kube.get_json("events.v1.events.k8s.io", "-n", ns)["items"]
    assert new_api and {e["reportingController"] for e in new_api} == {"httpsync"}, new_api


def test_restart_picks_up_where_it_left_off(kube: Any, api: ItemsApi, operator: Operator) -> None:
    ns = kube.new_namespace("op")
    path = f"/{ns}/users"
    api.set_items(path, users(ns, 3))
    apply(kube, ns, secret("api-creds", token=TOKEN), source("api", api.url), mapping("users", "api", path))
    hem = wait_for(ready(kube, ns, "hem/users"), "first sync", operator=operator)
    last = hem["status"]["lastSyncTime"]
    requests = api.count(path)

    operator.stop()
    api.set_items(path, users(ns, 2))
    operator.start()
    # Another namespace's new source proves the restarted operator is working...
    ns2 = kube.new_namespace("op")
    api.set_items(f"/{ns2}/users", users(ns2, 1))
    apply(kube, ns2, secret("api-creds", token=TOKEN), source("api", api.url), mapping("users", "api", f"/{ns2}/users"))
    wait_for(ready(kube, ns2, "hem/users"), "a sync after restart", operator=operator)
    # ...while the synced source waits out its interval instead of syncing again at start-up.
    assert api.count(path) == requests
    assert get(kube, ns, "hem/users")["status"]["lastSyncTime"] == last
    # A request after the restart is handled, and the remembered entities are diffed, not re-pushed.
    annotate(kube, ns, "hsrc/api", "after-restart")
    wait_for(
        lambda: get(kube, ns, "hsrc/api")["status"].get("lastHandledReconcileAt") == "after-restart",
        "sync after restart", operator=operator,
    )  # fmt: skip
    hem = get(kube, ns, "hem/users")
    assert hem["status"]["lastSync"]["entitiesUnchanged"] == 2
    assert hem["status"]["lastSync"]["entitiesUpserted"] == 0
    assert hem["status"]["lastSync"]["entitiesDeleted"] == 1


def test_operator_log_has_no_traceback(kube: Any, api: ItemsApi, operator: Operator) -> None:
    """Self-contained: it makes the operator sync, fail, stall, miss a source and delete before reading its log
    (after the other tests of this module, the log holds their activity too)."""
    ns = kube.new_namespace("op")
    path = f"/{ns}/users"
    api.set_items(path, users(ns, 3))
    bad = mapping("badjq", "api", path)
    bad["spec"]["mappings"]["title"] = ".name | ("
    apply(
        kube, ns,
        secret("api-creds", token=TOKEN),
        source("api", api.url),
        mapping("users", "api", path),
        bad,
        source("nosecret", api.url, auth={"type": "bearer", "secretRef": {"name": "missing", "key": "token"}}),
        mapping("unread", "nosecret", path),
        mapping("orphan", "missing", path),
    )  # fmt: skip
    wait_for(ready(kube, ns, "hem/users"), "a sync", operator=operator)
    wait_for(ready(kube, ns, "hem/badjq", "False", "InvalidJq"), "InvalidJq", operator=operator)
    wait_for(ready(kube, ns, "hsrc/nosecret", "False", "SecretNotFound"), "SecretNotFound", operator=operator)
    wait_for(ready(kube, ns, "hem/orphan", "False", "SourceNotFound"), "SourceNotFound", operator=operator)
    api.fail_status = 503
    try:
        annotate(kube, ns, "hsrc/api", "fail")
        wait_for(ready(kube, ns, "hem/users", "False"), "a failed sync", operator=operator)
    finally:
        api.fail_status = None
    kube.kubectl("delete", "-n", ns, "hem/users", "hem/badjq", "hem/unread", "hem/orphan", "--timeout=60s")
    kube.kubectl("delete", "-n", ns, "hsrc/api", "hsrc/nosecret", "--timeout=60s")

    log = operator.log(tail=10**7)
    assert "Traceback" not in log, log[-6000:]
    assert os.path.exists(operator.catalog)


@pytest.fixture(scope="module")
def port() -> Iterator[Any]:
    """The Port API emulator, in a thread of its own (the operator calls it from another process)."""
    import asyncio
    import threading

    from tests.portapi.server import PortApi

    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    papi = asyncio.run_coroutine_threadsafe(PortApi().start(), loop).result(10)
    yield papi
    asyncio.run_coroutine_threadsafe(papi.stop(), loop).result(10)
    loop.call_soon_threadsafe(loop.stop)
    thread.join(5)


def pushed(port: Any, ns: str) -> list[str]:
    """Identifiers of this namespace's users in every bulk upsert Port received, in order."""
    out = []
    for r in port.state.log:
        if r.method == "POST" and r.path.endswith("/entities/bulk"):
            out += [e["identifier"] for e in json.loads(r.body)["entities"] if e["identifier"].startswith(ns)]
    return out


def test_port_sink_state_lives_on_the_data_volume_and_losing_it_loses_nothing(
    kube: Any, api: ItemsApi, operator: Operator, port: Any
) -> None:
    from tests.portapi.server import CLIENT_ID, CLIENT_SECRET

    ns = kube.new_namespace("op")
    path = f"/{ns}/users"
    api.set_items(path, users(ns, 4))
    sink = {"type": "port", "port": {"baseUrl": port.url, "secretRef": {"name": "port-creds"}}}
    apply(
        kube, ns,
        secret("api-creds", token=TOKEN),
        secret("port-creds", clientId=CLIENT_ID, clientSecret=CLIENT_SECRET),
        source("api", api.url, sink=sink),
        mapping("users", "api", path),
    )  # fmt: skip
    wait_for(ready(kube, ns, "hem/users"), "first sync into Port", operator=operator)
    assert sorted(pushed(port, ns)) == [f"{ns}-{i}" for i in range(4)]
    assert sorted(k for k in port.state.entities.get("user", {}) if k.startswith(ns)) == [f"{ns}-{i}" for i in range(4)]
    cms = kube.get_json("configmaps", "-n", ns)["items"]
    assert not [c for c in cms if c["metadata"]["name"] != "kube-root-ca.crt"], "no state in etcd"
    assert operator.state.exists(), "the state is a file on the data volume"

    # A restart with the volume: nothing unchanged is pushed again, a vanished entity is deleted.
    operator.stop()
    api.set_items(path, users(ns, 3))
    operator.start()
    annotate(kube, ns, "hsrc/api", "after-restart")
    wait_for(
        lambda: get(kube, ns, "hsrc/api")["status"].get("lastHandledReconcileAt") == "after-restart",
        "a sync after the restart", operator=operator,
    )  # fmt: skip
    last = get(kube, ns, "hem/users")["status"]["lastSync"]
    assert (last["entitiesUpserted"], last["entitiesUnchanged"], last["entitiesDeleted"]) == (0, 3, 1)
    assert len(pushed(port, ns)) == 4, "no unchanged entity is pushed twice"
    assert sorted(k for k in port.state.entities["user"] if k.startswith(ns)) == [f"{ns}-{i}" for i in range(3)]

    # A restart on a fresh volume (emptyDir): the memory is rebuilt from Port (its search of the entities this
    # datasource wrote), so nothing unchanged is pushed again and the entity that vanished meanwhile is deleted,
    # not orphaned; the next sync is incremental.
    operator.stop()
    operator.state.unlink()
    api.set_items(path, users(ns, 2))
    operator.start()
    annotate(kube, ns, "hsrc/api", "fresh-disk")
    wait_for(
        lambda: get(kube, ns, "hsrc/api")["status"].get("lastHandledReconcileAt") == "fresh-disk",
        "a sync on a fresh disk", operator=operator,
    )  # fmt: skip
    last = get(kube, ns, "hem/users")["status"]["lastSync"]
    assert (last["entitiesUpserted"], last["entitiesUnchanged"], last["entitiesDeleted"]) == (0, 2, 1)
    assert sorted(k for k in port.state.entities["user"] if k.startswith(ns)) == [f"{ns}-{i}" for i in range(2)]
    assert len(pushed(port, ns)) == 4, "nothing pushed again"
    annotate(kube, ns, "hsrc/api", "incremental")
    wait_for(
        lambda: get(kube, ns, "hsrc/api")["status"].get("lastHandledReconcileAt") == "incremental",
        "an incremental sync", operator=operator,
    )  # fmt: skip
    assert len(pushed(port, ns)) == 4, "the rebuilt memory is used"
    assert CLIENT_SECRET not in kube.kubectl("get", "-n", ns, "hsrc,hem,events", "-o", "yaml").stdout

def test_deletion_guard_blocks_an_emptied_endpoint_until_lifted(kube: Any, api: ItemsApi, operator: Operator) -> None:
    ns = kube.new_namespace("op")
    path = f"/{ns}/users"
    api.set_items(path, users(ns, 4))
    apply(kube, ns, secret("api-creds", token=TOKEN), source("api", api.url), mapping("users", "api", path))
    wait_for(ready(kube, ns, "hem/users"), "first sync", operator=operator)

    api.set_items(path, [])  # the classic accident: an empty answer that would wipe the catalog
    annotate(kube, ns, "hsrc/api", "emptied")
    hem = wait_for(ready(kube, ns, "hem/users", "True", "DeletionBlocked"), "DeletionBlocked", operator=operator)
    message = condition(hem, "Ready")["message"]
    assert "4" in message and "deletionGuard" in message, message
    assert len(owned(operator, ns)) == 4, "the guard deleted nothing"

    lifted = mapping("users", "api", path, deletionGuard={"disabled": True})
    apply(kube, ns, lifted)
    hem = wait_for(ready(kube, ns, "hem/users", "True", "Succeeded"), "sync with the guard lifted", operator=operator)
    assert hem["status"]["lastSync"]["entitiesDeleted"] == 4
    assert owned(operator, ns) == {}
