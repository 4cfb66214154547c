"""The sync service behind the kopf handlers: one loop per HttpSource, a chain of small steps,
and one summarize-and-patch of each resource's status at the end of a sync (as Flux does).

The handlers (``handlers.py``) stay thin: they find the service in kopf's memo and call it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import kopf
from pydantic import ValidationError

from httpsync.api.models import HttpEndpointMappingSpec, HttpSourceSpec
from httpsync.controller import events
from httpsync.controller.conditions import READY, RECONCILING, Conditions, now_iso
from httpsync.controller.config import OperatorConfig
from httpsync.controller.kube import KubeApi, KubeSecrets
from httpsync.controller.metrics import Metrics
from httpsync.controller.sinks import Sinks, Target
from httpsync.controller.statebackup import ConfigMapStateBackup, StateCorruptError
from httpsync.engine.types import EndpointResult, EntityRef
from httpsync.errors import ConfigError, EngineError, SinkError
from httpsync.http.policy import DestinationPolicy
from httpsync.http.redact import redact

log = logging.getLogger("httpsync.controller")

SOURCES = "httpsources"
MAPPINGS = "httpendpointmappings"
REQUESTED_AT = "httpsync.io/requested-at"


@dataclass
class MappingRef:
    """What the mappings index keeps of one HttpEndpointMapping (the latest seen)."""

    name: str
    namespace: str
    uid: str
    generation: int
    spec: dict[str, Any]
    requested_at: str | None
    status: dict[str, Any]

    @property
    def body(self) -> dict[str, Any]:
        """Just enough of the object to post Events about it."""
        return {
            "apiVersion": "httpsync.io/v1alpha1",
            "kind": "HttpEndpointMapping",
            "metadata": {"name": self.name, "namespace": self.namespace, "uid": self.uid},
        }

    @property
    def source_name(self) -> str:
        return str((self.spec.get("sourceRef") or {}).get("name", ""))

    def is_new(self) -> bool:
        """A generation or reconcile request the status does not show as handled yet."""
        st = self.status or {}
        return st.get("observedGeneration") != self.generation or (
            self.requested_at is not None and st.get("lastHandledReconcileAt") != self.requested_at
        )


def mapping_ref(body: kopf.Body | dict[str, Any]) -> MappingRef:
    meta = body.get("metadata", {})
    return MappingRef(
        name=meta.get("name", ""),
        namespace=meta.get("namespace", ""),
        uid=meta.get("uid", ""),
        generation=int(meta.get("generation") or 0),
        spec=dict(body.get("spec") or {}),
        requested_at=(meta.get("annotations") or {}).get(REQUESTED_AT),
        status=dict(body.get("status") or {}),
    )


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")


def _parse_iso(text: str | None) -> float | None:
    if not text:
        return None
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


@dataclass
class SourceLoop:
    namespace: str
    name: str
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    next_due: float = 0.0
    # (generation, requested-at) of the source and of each mapping when their last sync started,
    # so the watch events caused by our own status patches do not trigger another sync.
    started_source: tuple[int, str | None] | None = None
    started_mappings: dict[str, tuple[int, str | None]] = field(default_factory=dict)


class SyncService:
    def __init__(
        self,
        config: OperatorConfig,
        kube: KubeApi,
        sinks: Sinks,
        metrics: Metrics,
    ) -> None:
        self.config = config
        self.kube = kube
        self.sinks = sinks
        self.metrics = metrics
        self.policy = DestinationPolicy(allow=config.destination_allow, deny=config.destination_deny)
        self.loops: dict[tuple[str, str], SourceLoop] = {}

    async def aclose(self) -> None:
        for closer in (self.sinks.aclose, self.kube.aclose):
            with contextlib.suppress(Exception):
                await closer()

    # ------------------------------------------------------------------ wake-ups

    def poke(self, namespace: str, source: str) -> bool:
        loop = self.loops.get((namespace, source))
        if loop is None:
            return False
        loop.wake.set()
        return True

    def source_changed(self, body: kopf.Body | dict[str, Any]) -> None:
        """A watch event of a source: wake its loop for a new generation or reconcile request."""
        meta = body.get("metadata", {})
        loop = self.loops.get((meta.get("namespace", ""), meta.get("name", "")))
        if loop is None:
            return
        st = body.get("status") or {}
        gen, req = int(meta.get("generation") or 0), (meta.get("annotations") or {}).get(REQUESTED_AT)
        new = st.get("observedGeneration") != gen or (req is not None and st.get("lastHandledReconcileAt") != req)
        if new and loop.started_source != (gen, req):
            loop.wake.set()

    def mapping_changed(self, ref: MappingRef) -> None:
        loop = self.loops.get((ref.namespace, ref.source_name))
        if loop is None or not ref.is_new():
            return
        if loop.started_mappings.get(ref.name) != (ref.generation, ref.requested_at):
            loop.wake.set()

    # ------------------------------------------------------------------ the loop

    async def run_source(
        self,
        body: kopf.Body,
        stopped: kopf.DaemonStopped,
        mappings_index: kopf.Index[tuple[str, str], MappingRef],
    ) -> None:
        namespace, name = body["metadata"]["namespace"], body["metadata"]["name"]
        loop = SourceLoop(namespace, name)
        self.loops[(namespace, name)] = loop
        try:
            loop.next_due = self._first_due(body)
            if loop.next_due <= time.time():
                await self._first_contact(body, mappings_index)
            while not stopped:
                if body.get("spec", {}).get("suspend"):
                    await self._mark_suspended(body, mappings_index)
                    await self._wait(loop, stopped, None)
                    loop.next_due = 0.0  # resumed (or still suspended): sync as soon as it is allowed
                    continue
                timeout = max(0.0, loop.next_due - time.time())
                if timeout > 0:
                    await self._wait(loop, stopped, timeout)
                    if stopped:
                        break
                    if body.get("spec", {}).get("suspend"):
                        continue
                interval = await self.sync_source(body, mappings_index)
                loop.next_due = time.time() + interval * (1 + random.uniform(-self.config.jitter, self.config.jitter))
                await self._patch_source(body, {"nextSyncTime": _iso(loop.next_due)})
        finally:
            self.loops.pop((namespace, name), None)

    @staticmethod
    async def _wait(loop: SourceLoop, stopped: kopf.DaemonStopped, timeout: float | None) -> None:
        wake = asyncio.ensure_future(loop.wake.wait())
        stop = asyncio.ensure_future(stopped.wait())
        try:
            await asyncio.wait({wake, stop}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for t in (wake, stop):
                t.cancel()
            loop.wake.clear()

    def _first_due(self, body: kopf.Body) -> float:
        """Restart-safe scheduling: nothing new since the last sync -> wait out the interval."""
        st = body.get("status") or {}
        meta = body["metadata"]
        requested = (meta.get("annotations") or {}).get(REQUESTED_AT)
        if st.get("observedGeneration") != meta.get("generation"):
            return 0.0
        if requested is not None and st.get("lastHandledReconcileAt") != requested:
            return 0.0
        last = _parse_iso(st.get("lastSyncTime"))
        if last is None:
            return 0.0
        try:
            interval = HttpSourceSpec.model_validate(body.get("spec") or {}).interval_seconds
        except ValidationError:
            return 0.0
        return last + interval

    # ------------------------------------------------------------------ status helpers

    async def _patch_source(self, body: kopf.Body, status: dict[str, Any]) -> None:
        meta = body["metadata"]
        await self.kube.patch_status(SOURCES, meta["namespace"], meta["name"], status)

    async def _patch_mapping(self, ref: MappingRef, status: dict[str, Any]) -> None:
        await self.kube.patch_status(MAPPINGS, ref.namespace, ref.name, status)

    async def _first_contact(self, body: kopf.Body, mappings_index: Any) -> None:
        """Ready=Unknown + Reconciling=True, so nothing looks finished before its first sync."""
        meta = body["metadata"]
        cond = Conditions((body.get("status") or {}).get("conditions"), meta.get("generation"))
        if cond.status(READY) is None or cond.status(RECONCILING) is None:
            cond.mark_reconciling("Progressing", "Syncing endpoints")
            if cond.status(READY) in (None, "Unknown"):
                cond.mark_unknown("Progressing", "Waiting for the first sync")
            # observedGeneration is written only when a sync of that generation has finished: a restart
            # mid-sync must see the generation as not yet handled.
            await self._patch_source(body, {"conditions": cond.to_list()})

    async def mapping_first_contact(self, ref: MappingRef, *, source_exists: bool) -> None:
        """Called for every mapping event: a new mapping gets Ready=Unknown/Reconciling=True;
        a mapping whose source does not exist gets Ready=False SourceNotFound."""
        cond = Conditions(ref.status.get("conditions"), ref.generation)
        if not source_exists:
            current = cond.get(READY) or {}
            if current.get("reason") == "SourceNotFound" and ref.status.get("observedGeneration") == ref.generation:
                return
            cond.mark_not_ready(
                "SourceNotFound",
                f"HttpSource {ref.source_name} not found in namespace {ref.namespace}; create it, or fix "
                "spec.sourceRef.name (this mapping starts syncing as soon as the source exists)",
                stalled=False,
            )
            await self._patch_mapping(ref, {"conditions": cond.to_list(), "observedGeneration": ref.generation})
            return
        if cond.status(READY) is None or (ref.is_new() and cond.status(RECONCILING) is None):
            cond.mark_reconciling("Progressing", "Sync requested")
            if cond.status(READY) is None:
                cond.mark_unknown("Progressing", "Waiting for the first sync")
            await self._patch_mapping(ref, {"conditions": cond.to_list()})

    async def _mark_suspended(self, body: kopf.Body, mappings_index: Any) -> None:
        meta = body["metadata"]
        st = body.get("status") or {}
        cond = Conditions(st.get("conditions"), meta.get("generation"))
        ready = cond.get(READY) or {}
        if ready.get("reason") == "Suspended" and st.get("observedGeneration") == meta.get("generation"):
            return
        msg = "Syncing is suspended (spec.suspend is true); entities from the last sync are kept"
        cond.set(READY, ready.get("status", "Unknown"), "Suspended", msg)
        cond.delete(RECONCILING)
        await self._patch_source(
            body,
            {
                "conditions": cond.to_list(),
                "observedGeneration": meta.get("generation"),
                "nextSyncTime": None,
            },
        )
        for ref in self._mappings(body, mappings_index):
            mc = Conditions(ref.status.get("conditions"), ref.generation)
            mready = mc.get(READY) or {}
            mc.set(READY, mready.get("status", "Unknown"), "Suspended", f"HttpSource {meta['name']} is suspended")
            mc.delete(RECONCILING)
            await self._patch_mapping(ref, {"conditions": mc.to_list()})
        events.normal(body, "Suspended", msg)

    @staticmethod
    def _mappings(body: kopf.Body, mappings_index: Any) -> list[MappingRef]:
        key = (body["metadata"]["namespace"], body["metadata"]["name"])
        return sorted(mappings_index.get(key, []), key=lambda r: r.name)

    # ------------------------------------------------------------------ one sync

    async def sync_source(self, body: kopf.Body, mappings_index: Any) -> float:
        """Sync every mapping of a source once and write all statuses. Returns the interval."""
        meta = body["metadata"]
        namespace, name = meta["namespace"], meta["name"]
        generation = meta.get("generation")
        requested = (meta.get("annotations") or {}).get(REQUESTED_AT)
        spec_raw = dict(body.get("spec") or {})
        mappings = self._mappings(body, mappings_index)
        loop = self.loops.get((namespace, name))
        if loop is not None:
            loop.started_source = (int(generation or 0), requested)
            loop.started_mappings = {r.name: (r.generation, r.requested_at) for r in mappings}
        status_before = dict(body.get("status") or {})
        cond = Conditions(status_before.get("conditions"), generation)
        ready_before = cond.get(READY) or {}

        if cond.status(RECONCILING) is None and (
            status_before.get("observedGeneration") != generation
            or (requested and status_before.get("lastHandledReconcileAt") != requested)
        ):
            cond.mark_reconciling("Progressing", f"Syncing {len(mappings)} endpoint(s)")
            await self._patch_source(body, {"conditions": cond.to_list()})

        interval = 3600.0
        source_error: EngineError | None = None
        results: list[tuple[MappingRef, EndpointResult | None, EngineError | None]] = []
        try:
            spec = HttpSourceSpec.model_validate(spec_raw)
            interval = spec.interval_seconds
        except ValidationError as e:
            source_error = ConfigError(f"spec is invalid: {_first_error(e)}")
            spec = None

        if spec is not None:
            try:
                results = await self._sync_mappings(namespace, name, spec, mappings)
            except EngineError as e:
                source_error = e
            except Exception as e:  # never let an unexpected error leak secrets or kill the loop
                log.exception("source %s/%s: unexpected error", namespace, name)
                source_error = EngineError(redact(f"{type(e).__name__}: {e}"))
        if source_error is not None:
            results = [(r, None, source_error) for r in mappings]

        # Mapping statuses (one patch each).
        for ref, result, error in results:
            await self._write_mapping_status(ref, result, error)

        # Source status (one patch).
        ready = [r for r, res, _ in results if res is not None and res.succeeded]
        total = len(results)
        now = time.time()
        summaries = []
        for ref, res, err in results:
            ok = res is not None and res.succeeded
            summaries.append(
                {
                    "name": ref.name,
                    "ready": "True" if ok else "False",
                    "reason": (res.reason if res is not None else (err.reason if err else None)) or "Succeeded",
                    "message": ((res.message if res is not None else (err.message if err else "")) or "")[:1024],
                }
            )
        if source_error is not None:
            cond.mark_not_ready(source_error.reason, source_error.message, stalled=source_error.stalled)
        elif total == 0:
            cond.mark_ready("NoEndpoints", "No HttpEndpointMapping refers to this source yet")
        elif len(ready) == total:
            entities = sum((res.entities_upserted + res.entities_unchanged) for _, res, _ in results if res)
            cond.mark_ready("Succeeded", f"{total}/{total} endpoints synced, {entities} entities")
        else:
            failed = [(r, res, err) for r, res, err in results if not (res is not None and res.succeeded)]
            first_ref, first_res, first_err = failed[0]
            why = first_res.message if first_res is not None else (first_err.message if first_err else "")
            cond.mark_not_ready(
                "EndpointsFailed",
                f"{len(ready)}/{total} endpoints ready; {first_ref.name}: {why}",
                stalled=False,
            )
        status: dict[str, Any] = {
            "observedGeneration": generation,
            "conditions": cond.to_list(),
            "lastSyncTime": _iso(now),
            "endpointsReady": len(ready),
            "endpointsTotal": total,
            "endpoints": f"{len(ready)}/{total}",
            "mappings": summaries[:100],
        }
        if requested is not None:
            status["lastHandledReconcileAt"] = requested
        await self._patch_source(body, status)
        events.on_transition(body, ready_before, cond.get(READY) or {})
        ready_now = cond.get(READY) or {}
        level = logging.INFO if ready_now.get("status") == "True" else logging.WARNING
        log.log(level, "source %s/%s: %s: %s", namespace, name, ready_now.get("reason"), ready_now.get("message"))
        return interval

    async def _sync_mappings(
        self, namespace: str, name: str, spec: HttpSourceSpec, mappings: list[MappingRef]
    ) -> list[tuple[MappingRef, EndpointResult | None, EngineError | None]]:
        """Source-level steps (policy, secrets, client, sink), then every mapping concurrently.
        A source-level failure raises; a mapping's failure is its own result."""
        from httpsync.engine.client import SourceClient

        self.policy.check(spec.base_url)
        secrets = KubeSecrets(self.kube, namespace)
        counter = self.metrics.http_requests

        def on_response(code: int | None) -> None:
            counter.labels(namespace, name, str(code or 0)).inc()

        client = await SourceClient.create(spec, secrets, check_url=self.policy.check, on_response=on_response)
        try:
            async with self.sinks.for_source(spec.sink, secrets, name) as target:
                sem = asyncio.Semaphore(self.config.mapping_concurrency)

                async def one(ref: MappingRef) -> tuple[MappingRef, EndpointResult | None, EngineError | None]:
                    async with sem:
                        return await self._sync_mapping(ref, spec, client, target)

                return list(await asyncio.gather(*(one(r) for r in mappings)))
        finally:
            await client.aclose()

    async def _sync_mapping(
        self, ref: MappingRef, source: HttpSourceSpec, client: Any, target: Target
    ) -> tuple[MappingRef, EndpointResult | None, EngineError | None]:
        from httpsync.engine.sync import sync_mapping

        try:
            mapping = HttpEndpointMappingSpec.model_validate(ref.spec)
        except ValidationError as e:
            return ref, None, ConfigError(f"spec is invalid: {_first_error(e)}")
        owner = f"{ref.namespace}/{ref.name}"
        backup = ConfigMapStateBackup(self.kube, ref.namespace, ref.name, ref.uid) if target.remote else None
        try:
            if backup is not None:
                await self._restore_memory(backup, target, owner)
            result = await sync_mapping(
                client,
                ref.name,
                mapping,
                mapping.pagination or source.pagination,
                target.sink,
                target.state,
                owner=owner,
            )
            if backup is not None and (
                result.entities_upserted or result.entities_deleted or not await backup.exists()
            ):
                await backup.save(target.state.export_rows(owner))
        except EngineError as e:
            return ref, None, e
        except Exception as e:
            log.exception("mapping %s: unexpected error", owner)
            return ref, None, EngineError(redact(f"unexpected error: {type(e).__name__}: {e}"))
        m = self.metrics
        m.sync_duration.labels(ref.namespace, ref.source_name, ref.name).observe(result.duration_seconds)
        m.syncs.labels(ref.namespace, ref.source_name, ref.name, result.outcome).inc()
        m.items_fetched.labels(ref.namespace, ref.name).inc(result.items_fetched)
        m.entities_upserted.labels(ref.namespace, ref.name).inc(result.entities_upserted)
        m.entities_deleted.labels(ref.namespace, ref.name).inc(result.entities_deleted)
        if result.succeeded:
            m.last_success.labels(ref.namespace, ref.name).set(time.time())
        return ref, result, None

    @staticmethod
    async def _restore_memory(backup: ConfigMapStateBackup, target: Target, owner: str) -> None:
        """After a restart on a fresh disk, reload a remote sink's memory from its ConfigMaps.
        A corrupt backup is dropped: the sync then pushes everything again and deletes nothing."""
        async for _row in target.state.export_rows(owner):
            return  # the local memory is there
        if not await backup.exists():
            return
        try:
            n = await target.state.import_rows(owner, backup.load())
            log.info("mapping %s: restored the memory of %d entities from ConfigMaps", owner, n)
        except StateCorruptError as e:
            log.warning("mapping %s: %s", owner, e)
            await target.state.forget(owner)

    async def _write_mapping_status(
        self, ref: MappingRef, result: EndpointResult | None, error: EngineError | None
    ) -> None:
        cond = Conditions(ref.status.get("conditions"), ref.generation)
        before = cond.get(READY) or {}
        status: dict[str, Any] = {"observedGeneration": ref.generation, "lastSyncTime": now_iso()}
        if ref.requested_at is not None:
            status["lastHandledReconcileAt"] = ref.requested_at
        if result is not None:
            status["lastSync"] = result.to_status().to_wire()
            if result.succeeded:
                owned = result.entities_upserted + result.entities_unchanged + result.entities_failed
                if not result.deletion_blocked:  # blocked: stale entities are still owned, count unknown here
                    status["entityCount"] = owned
                    self.metrics.entity_count.labels(ref.namespace, ref.name).set(owned)
                status["lastSuccessfulSyncTime"] = status["lastSyncTime"]
                if result.deletion_blocked:
                    cond.mark_ready("DeletionBlocked", result.deletion_blocked)
                else:
                    msg = (
                        f"Synced {result.entities_upserted + result.entities_unchanged} entities from "
                        f"{result.items_fetched} items"
                    )
                    extras = []
                    if result.items_filtered:
                        extras.append(f"{result.items_filtered} filtered")
                    if result.entities_deleted:
                        extras.append(f"{result.entities_deleted} deleted")
                    if result.mapping_error_count:
                        extras.append(f"{result.mapping_error_count} mapping errors")
                    if result.entities_failed:
                        extras.append(f"{result.entities_failed} rejected by the sink")
                    if extras:
                        msg += " (" + ", ".join(extras) + ")"
                    cond.mark_ready("Succeeded", msg)
            else:
                cond.mark_not_ready(
                    result.reason or "SyncFailed",
                    f"{result.message}; entities from the last successful sync are kept",
                    stalled=result.stalled,
                )
        else:
            err = error or EngineError("sync did not run")
            cond.mark_not_ready(err.reason, err.message, stalled=err.stalled)
        status["conditions"] = cond.to_list()
        await self._patch_mapping(ref, status)
        events.on_transition(ref.body, before, cond.get(READY) or {})

    # ------------------------------------------------------------------ deletion

    async def delete_mapping_entities(self, namespace: str, name: str, spec: dict[str, Any]) -> int:
        """Remove a deleted mapping's entities from the sink, unless its policy says Keep."""
        owner = f"{namespace}/{name}"
        policy = (spec or {}).get("deletionPolicy", "Delete")
        self.metrics.forget_mapping(namespace, name)
        sink_spec = None
        source = await self.kube.get(SOURCES, namespace, str((spec.get("sourceRef") or {}).get("name", "")))
        if source is not None:
            with contextlib.suppress(ValidationError):
                sink_spec = HttpSourceSpec.model_validate(source.get("spec") or {}).sink
        async with self.sinks.for_source(sink_spec, KubeSecrets(self.kube, namespace), owner) as target:
            if policy == "Keep":
                await target.state.forget(owner)
                if target.remote:
                    await ConfigMapStateBackup(self.kube, namespace, name, "").delete_all()
                return 0
            # Delete first, forget after: a failed delete is retried with the memory intact.
            refs = [r async for r in _owned(target, owner)]
            if refs:
                report = await target.sink.delete(owner, refs)
                if report.failed:
                    raise SinkError(f"{len(report.failed)} of {len(refs)} entities could not be deleted")
            await target.state.forget(owner)
            if target.remote:
                await ConfigMapStateBackup(self.kube, namespace, name, "").delete_all()
            return len(refs)


async def _owned(target: Target, owner: str) -> AsyncIterator[EntityRef]:
    """What the memory says this owner pushed (read before anything is forgotten)."""
    async for blueprint, identifier, _hash in target.state.export_rows(owner):
        yield EntityRef(blueprint, identifier)


def _first_error(e: ValidationError) -> str:
    err = e.errors()[0]
    loc = ".".join(str(x) for x in err.get("loc", ()))
    return f"{loc}: {err.get('msg')}"


__all__ = ["MAPPINGS", "REQUESTED_AT", "SOURCES", "MappingRef", "SyncService", "mapping_ref"]
