"""Thin kopf handlers over :class:`httpsync.controller.service.SyncService`: each parses the
resource into its model (:mod:`.objects`) and hands it on.

Importing this module registers the handlers with kopf's default registry.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import kopf

from httpsync.api.models import GROUP, VERSION
from httpsync.controller import events, sharding
from httpsync.controller.config import min_interval
from httpsync.controller.objects import FINALIZER, MAPPINGS, SOURCES, MappingObject, Meta, SourceObject
from httpsync.controller.service import SyncService
from httpsync.http.redact import redact

log = logging.getLogger("httpsync.controller")
FINALIZER_WAIT_STEPS = 100  # of 0.1 s


class NoDiffBase(kopf.DiffBaseStorage):
    """No diff-base at all: httpsync has no create/update handlers, so kopf's "last handled
    configuration" would only cost a write per created object and per spec change. Without one,
    kopf sees every event as a creation with no handler, and does nothing for it."""

    def fetch(self, *, body: kopf.Body) -> kopf.BodyEssence | None:
        return None

    def store(self, *, body: kopf.Body, patch: kopf.Patch, essence: kopf.BodyEssence) -> None:
        return None


@kopf.on.startup()
async def configure(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
    # kopf's own bookkeeping lives under our prefix.
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix="httpsync.io")
    settings.persistence.diffbase_storage = NoDiffBase()
    settings.persistence.finalizer = FINALIZER
    settings.posting.level = logging.WARNING  # our own Events are posted on state changes only
    events.configure_posting(settings)  # reported by httpsync, not kopf
    min_interval.seconds = memo.config.min_interval_seconds
    settings.watching.server_timeout = 300
    settings.watching.client_timeout = 330
    settings.watching.inactivity_timeout = 600
    settings.networking.request_timeout = memo.config.api_timeout_seconds
    settings.networking.connect_timeout = min(10.0, memo.config.api_timeout_seconds)
    sharding.configure(settings, memo.config.shard)  # list and watch only this operator's shard
    if getattr(memo, "service", None) is None:
        from httpsync.controller.bootstrap import build_service

        memo.service = await build_service(memo.config)


@kopf.on.cleanup()
async def cleanup(memo: kopf.Memo, **_: Any) -> None:
    service: SyncService | None = getattr(memo, "service", None)
    if service is not None:
        await service.aclose()


@kopf.on.login()
def login(**kwargs: Any) -> kopf.ConnectionInfo | None:
    return kopf.login_with_service_account(**kwargs) or kopf.login_with_kubeconfig(**kwargs)


@kopf.on.probe(id="syncLoops")
def sync_loops(memo: kopf.Memo, **_: Any) -> int:
    service: SyncService | None = getattr(memo, "service", None)
    return len(service.loops) if service else 0


@kopf.index(GROUP, VERSION, MAPPINGS)
def mappings_by_source(body: kopf.Body, namespace: str, **_: Any) -> dict[Any, MappingObject]:
    mapping = MappingObject.from_body(body)
    return {(namespace, mapping.source_name): mapping}


@kopf.index(GROUP, VERSION, SOURCES)
def sources_by_name(namespace: str, name: str, spec: kopf.Spec, **_: Any) -> dict[Any, bool]:
    """(namespace, name) -> whether the source is suspended."""
    return {(namespace, name): bool(spec.get("suspend"))}


@kopf.daemon(GROUP, VERSION, SOURCES, id="sync", cancellation_timeout=10)
async def source_loop(
    body: kopf.Body, stopped: kopf.DaemonStopped, memo: kopf.Memo, mappings_by_source: kopf.Index, **_: Any
) -> None:
    # kopf keeps ``body`` current: the loop re-reads (re-parses) it before each decision.
    def mappings_of(key: tuple[str, str]) -> list[MappingObject]:
        return sorted(mappings_by_source.get(key, []), key=lambda m: m.name)

    # kopf adds the finalizer to a new source with a patch that tests the resourceVersion; a status
    # write before it lands would make it fail (HTTP 422) and be retried.
    for _ in range(FINALIZER_WAIT_STEPS):
        if stopped or Meta.of(body).finalized:  # the metadata only: no parse of the spec every 0.1 s
            break
        await asyncio.sleep(0.1)

    await memo.service.scheduler.run(lambda: SourceObject.from_body(body), mappings_of, stopped)


@kopf.on.event(GROUP, VERSION, SOURCES)
async def source_event(type: str, body: kopf.Body, memo: kopf.Memo, mappings_by_source: kopf.Index, **_: Any) -> None:
    source = SourceObject.from_body(body)
    if type == "DELETED":
        # Its mappings now point at nothing: say so on each of them.
        for mapping in list(mappings_by_source.get(source.key, [])):
            await memo.service.mapping_seen(mapping, source_exists=False)
        return
    if body.get("metadata", {}).get("deletionTimestamp"):
        return
    memo.service.scheduler.source_changed(source)


@kopf.on.event(GROUP, VERSION, MAPPINGS)
async def mapping_event(type: str, body: kopf.Body, memo: kopf.Memo, sources_by_name: kopf.Index, **_: Any) -> None:
    if type == "DELETED" or body.get("metadata", {}).get("deletionTimestamp"):
        return
    if not Meta.of(body).finalized:
        # kopf is adding the finalizer with a patch that tests the resourceVersion: a status write now
        # would make it fail (HTTP 422) and be retried. Its watch event brings us back here.
        return
    mapping = MappingObject.from_body(body)
    key = (mapping.namespace, mapping.source_name)
    exists = key in sources_by_name
    suspended = exists and any(sources_by_name.get(key, []))
    await memo.service.mapping_seen(mapping, source_exists=exists, source_suspended=suspended)


@kopf.on.delete(GROUP, VERSION, MAPPINGS, id="remove-entities")
async def mapping_deleted(namespace: str, name: str, memo: kopf.Memo, retry: int, body: kopf.Body, **_: Any) -> None:
    try:
        removed = await memo.service.reconciler.delete_mapping_entities(MappingObject.from_body(body))
    except Exception as e:
        message = redact(f"could not remove the entities of {namespace}/{name}: {e}")
        if retry < 4:
            raise kopf.TemporaryError(message, delay=15) from None
        kopf.warn(body, reason="EntitiesNotRemoved", message=f"{message}; giving up, the entities stay in the sink")
        return
    log.info("mapping %s/%s deleted: removed %d entities", namespace, name, removed)
