"""The controller's service in-process (no operator subprocess, no kopf): the reconcile steps, the
loop and the finalizer's entity removal against the real kube-apiserver, a real loopback API and the
real embedded catalog. The cases the end-to-end tests (test_operator.py) cover slowly, here in
seconds."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from httpsync.controller.bootstrap import build_service
from httpsync.controller.config import OperatorConfig
from httpsync.controller.objects import MappingObject, SourceObject
from httpsync.controller.service import SyncService
from tests.controller.harness import TOKEN, apply, condition, get, mapping, secret, source, users
from tests.controller.itemsapi import ItemsApi

pytestmark = pytest.mark.cluster


@pytest.fixture(scope="module")
def api() -> Iterator[ItemsApi]:
    a = ItemsApi().start()
    yield a
    a.stop()


@pytest.fixture
async def service(kube: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[SyncService]:
    monkeypatch.setenv("KUBECONFIG", kube.kubeconfig)
    svc = await build_service(
        OperatorConfig(catalog_path=tmp_path / "catalog.db", state_path=tmp_path / "state.db")
    )
    try:
        yield svc
    finally:
        await svc.aclose()


def read(kube: Any, ns: str, name: str = "api") -> tuple[SourceObject, list[MappingObject]]:
    """The source and its mappings as the handlers would hand them over."""
    src = SourceObject.from_body(get(kube, ns, f"hsrc/{name}"))
    items = [MappingObject.from_body(i) for i in get(kube, ns, "hem")["items"]]
    return src, sorted((m for m in items if m.source_name == name), key=lambda m: m.name)


async def entities(svc: SyncService, prefix: str) -> list[str]:
    listed = await svc.sinks.catalog.sink.list_entities()
    return sorted(e["identifier"] for e in listed if e["identifier"].startswith(prefix))


async def until(check: Callable[[], Any], what: str, timeout: float = 30) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = await asyncio.to_thread(check)
        if value:
            return value
        await asyncio.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def setup(kube: Any, api: ItemsApi, n: int = 3, **source_spec: Any) -> str:
    ns = kube.new_namespace("rc")
    api.set_items(f"/{ns}/users", users(ns, n))
    apply(kube, ns, secret("api-creds", token=TOKEN), source("api", api.url, **source_spec),
          mapping("users", "api", f"/{ns}/users"))  # fmt: skip
    return ns


async def test_a_reconcile_syncs_and_writes_each_status(kube: Any, api: ItemsApi, service: SyncService) -> None:
    ns = setup(kube, api)
    interval = await service.reconciler.reconcile(*read(kube, ns))
    assert interval == 3600
    hem, hsrc = get(kube, ns, "hem/users"), get(kube, ns, "hsrc/api")
    assert condition(hem, "Ready")["reason"] == "Succeeded"  # type: ignore[index]
    assert hem["status"]["entityCount"] == 3 and hem["status"]["lastSync"]["entitiesUpserted"] == 3
    assert hem["status"]["observedGeneration"] == hem["metadata"]["generation"]
    ready = condition(hsrc, "Ready")
    assert ready is not None and ready["status"] == "True" and ready["message"] == "1/1 endpoints synced, 3 entities"
    assert hsrc["status"]["endpoints"] == "1/1" and condition(hsrc, "Reconciling") is None
    assert await entities(service, ns) == [f"{ns}-{i}" for i in range(3)]
    src, (users_mapping,) = read(kube, ns)
    assert not src.pending and not users_mapping.pending, "handled: a restart must not sync again"
    assert src.due_at() > time.time() + 3000, "due one interval after the sync"

    # Unchanged: nothing pushed again; the counts say so.
    await service.reconciler.reconcile(*read(kube, ns))
    last = get(kube, ns, "hem/users")["status"]["lastSync"]
    assert (last["entitiesUpserted"], last["entitiesUnchanged"]) == (0, 3)


async def test_a_failure_deletes_nothing_and_says_why(kube: Any, api: ItemsApi, service: SyncService) -> None:
    ns = setup(kube, api)
    await service.reconciler.reconcile(*read(kube, ns))
    api.set_items(f"/{ns}/users", [])
    api.fail_status = 500
    try:
        await service.reconciler.reconcile(*read(kube, ns))
    finally:
        api.fail_status = None
    hem = get(kube, ns, "hem/users")
    ready = condition(hem, "Ready")
    assert ready is not None and ready["status"] == "False" and "500" in ready["message"]
    assert ready["message"].endswith("entities from the last successful sync are kept")
    assert hem["status"]["entityCount"] == 3, "the last good count stays"
    assert condition(get(kube, ns, "hsrc/api"), "Ready")["reason"] == "EndpointsFailed"  # type: ignore[index]
    assert len(await entities(service, ns)) == 3


async def test_a_source_level_error_is_the_sources_condition(kube: Any, api: ItemsApi, service: SyncService) -> None:
    ns = kube.new_namespace("rc")
    apply(kube, ns, source("api", api.url), mapping("users", "api", f"/{ns}/users"))  # no Secret
    await service.reconciler.reconcile(*read(kube, ns))
    hsrc, hem = get(kube, ns, "hsrc/api"), get(kube, ns, "hem/users")
    assert condition(hsrc, "Ready")["reason"] == "SecretNotFound"  # type: ignore[index]
    assert condition(hsrc, "Stalled")["status"] == "True"  # type: ignore[index]
    assert "api-creds" in condition(hsrc, "Ready")["message"]  # type: ignore[index]
    assert condition(hem, "Ready")["reason"] == "SecretNotFound"  # type: ignore[index]
    assert "lastSync" not in hem["status"], "the mapping did not run"


async def test_an_invalid_mapping_fails_alone(kube: Any, api: ItemsApi, service: SyncService) -> None:
    ns = setup(kube, api, n=2)
    bad = mapping("bad", "api", f"/{ns}/users")
    bad["spec"]["mappings"]["title"] = ".name | ("
    apply(kube, ns, bad)
    await service.reconciler.reconcile(*read(kube, ns))
    assert condition(get(kube, ns, "hem/bad"), "Ready")["reason"] == "InvalidJq"  # type: ignore[index]
    assert condition(get(kube, ns, "hem/users"), "Ready")["status"] == "True"  # type: ignore[index]
    assert get(kube, ns, "hsrc/api")["status"]["endpoints"] == "1/2"


class Stop:
    def __init__(self) -> None:
        self.event = asyncio.Event()

    def __bool__(self) -> bool:
        return self.event.is_set()

    async def wait(self) -> bool:
        return await self.event.wait()


async def test_the_loop_syncs_then_answers_a_request_then_stops(
    kube: Any, api: ItemsApi, service: SyncService
) -> None:
    ns = setup(kube, api)
    latest: list[SourceObject] = [read(kube, ns)[0]]

    def mappings_of(key: tuple[str, str]) -> list[MappingObject]:
        return read(kube, ns)[1]

    stop = Stop()
    task = asyncio.create_task(service.scheduler.run(lambda: latest[-1], mappings_of, stop))
    hsrc = await until(lambda: get(kube, ns, "hsrc/api")["status"].get("nextSyncTime") and get(kube, ns, "hsrc/api"),
                       "the first sync")  # fmt: skip
    assert condition(hsrc, "Ready")["status"] == "True"  # type: ignore[index]
    assert service.loops and (ns, "api") in service.loops

    kube.kubectl("annotate", "-n", ns, "hsrc/api", "httpsync.io/requested-at=now-1")
    latest.append(read(kube, ns)[0])
    service.scheduler.source_changed(latest[-1])
    await until(lambda: get(kube, ns, "hsrc/api")["status"].get("lastHandledReconcileAt") == "now-1",
                "the requested sync")  # fmt: skip

    stop.event.set()
    await asyncio.wait_for(task, 10)
    assert (ns, "api") not in service.loops


async def test_a_suspended_source_is_never_synced(kube: Any, api: ItemsApi, service: SyncService) -> None:
    ns = setup(kube, api, suspend=True)
    stop = Stop()
    task = asyncio.create_task(service.scheduler.run(lambda: read(kube, ns)[0], lambda key: read(kube, ns)[1], stop))
    hsrc = await until(lambda: (condition(get(kube, ns, "hsrc/api"), "Ready") or {}).get("reason") == "Suspended"
                       and get(kube, ns, "hsrc/api"), "Suspended")  # fmt: skip
    assert condition(hsrc, "Reconciling") is None and "nextSyncTime" not in hsrc["status"]
    hem = await until(lambda: (condition(get(kube, ns, "hem/users"), "Ready") or {}).get("reason") == "Suspended"
                      and get(kube, ns, "hem/users"), "the mapping says Suspended")  # fmt: skip
    assert condition(hem, "Reconciling") is None
    stop.event.set()
    await asyncio.wait_for(task, 10)
    assert api.requests[f"/{ns}/users"] == 0
    assert await entities(service, ns) == []


async def test_the_finalizer_removes_entities_unless_kept(kube: Any, api: ItemsApi, service: SyncService) -> None:
    ns = setup(kube, api)
    await service.reconciler.reconcile(*read(kube, ns))
    _, (users_mapping,) = read(kube, ns)
    assert await service.reconciler.delete_mapping_entities(users_mapping) == 3
    assert await entities(service, ns) == []

    ns2 = setup(kube, api, n=2)
    kube.kubectl("patch", "-n", ns2, "hem/users", "--type=merge", "-p", '{"spec":{"deletionPolicy":"Keep"}}')
    await service.reconciler.reconcile(*read(kube, ns2))
    _, (kept,) = read(kube, ns2)
    assert await service.reconciler.delete_mapping_entities(kept) == 0
    assert len(await entities(service, ns2)) == 2, "Keep leaves the entities in the sink"


# ---------------------------------------------------------------------------- races that must not orphan


class SlowApi(ItemsApi):
    """The items API, each request held ``delay`` seconds (a far-away API)."""

    def __init__(self, delay: float) -> None:
        super().__init__()
        handler = self.server.RequestHandlerClass

        class Slow(handler):  # type: ignore[misc,valid-type]
            def do_GET(self) -> None:
                time.sleep(delay)
                super().do_GET()

        self.server.RequestHandlerClass = Slow


@pytest.fixture
def slow_api() -> Iterator[ItemsApi]:
    a = SlowApi(0.05).start()
    yield a
    a.stop()


def slow_setup(kube: Any, api: ItemsApi, n: int = 4000) -> str:
    ns = kube.new_namespace("race")
    api.set_items(f"/{ns}/items", users(ns, n))
    pagination = {"type": "page", "pageSize": 100, "sizeParam": "size", "totalPath": ".total"}
    apply(kube, ns, secret("api-creds", token=TOKEN), source("api", api.url, pagination=pagination),
          mapping("items", "api", f"/{ns}/items"))  # fmt: skip
    return ns


async def test_deleting_a_mapping_mid_sync_leaves_nothing_behind(
    kube: Any, slow_api: ItemsApi, service: SyncService
) -> None:
    ns = slow_setup(kube, slow_api)
    src, mappings = read(kube, ns)
    sync = asyncio.create_task(service.reconciler.reconcile(src, mappings))
    while len(await entities(service, ns)) < 1000:  # the sync is writing
        assert not sync.done(), "the sync ended before the test could race it"
        await asyncio.sleep(0.05)
    removed = await service.reconciler.delete_mapping_entities(mappings[0])
    assert removed >= 1000
    await asyncio.wait_for(sync, 30)
    assert await entities(service, ns) == [], "no row of the deleted mapping is left or written after"
    assert [r async for r in service.sinks.catalog.state.owned(mappings[0].owner)] == []
    # The index may still list it for a moment: a sync of its source must not write for it.
    await service.reconciler.reconcile(src, mappings)
    assert await entities(service, ns) == []
    assert condition(get(kube, ns, "hsrc/api"), "Ready")["reason"] == "EndpointsFailed"  # type: ignore[index]


async def test_a_source_going_away_mid_sync_stops_its_syncs_cleanly(
    kube: Any, slow_api: ItemsApi, service: SyncService
) -> None:
    ns = slow_setup(kube, slow_api)
    src, mappings = read(kube, ns)
    stop = Stop()
    loop = asyncio.create_task(service.scheduler.run(lambda: src, lambda key: mappings, stop))
    while len(await entities(service, ns)) < 1000:
        assert not loop.done()
        await asyncio.sleep(0.05)
    stop.event.set()  # what kopf does first when the source is deleted or the operator stops
    await asyncio.wait_for(loop, 10)
    # The mapping (deletionPolicy: Delete) is deleted with its source: its finalizer removes exactly
    # what was written, since the sink and the state agree at a batch boundary.
    written = len(await entities(service, ns))
    assert 1000 <= written < 4000
    assert await service.reconciler.delete_mapping_entities(mappings[0]) == written
    assert await entities(service, ns) == []
