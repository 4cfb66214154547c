"""One reconcile of one source, as a list of small steps (the shape of Flux's source-controller):

1. ``progressing``: say Reconciling=True if this generation or request has not been handled yet;
2. ``run``: resolve the sink and the Secrets, then run every mapping through the engine's per-source
   runner (the same one ``httpsync sync`` uses); a source-level failure becomes every mapping's error;
3. ``summarize``: pure functions turn the outcomes into status models (:mod:`.summarize`);
4. ``patch``: one status write per mapping and one for the source (:mod:`.patch`), then Events on
   transitions, metrics and one log line.

Deleting a mapping's entities (the finalizer) lives here too: it needs the same sink resolution.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from httpsync.api.models import EndpointResult, HttpSourceSpec
from httpsync.controller import events
from httpsync.controller.config import OperatorConfig
from httpsync.controller.kube import KubeApi, KubeSecrets
from httpsync.controller.metrics import Metrics
from httpsync.controller.objects import SOURCES, MappingObject, SourceObject, iso, parse_iso
from httpsync.controller.patch import StatusWriter
from httpsync.controller.summarize import (
    MappingOutcome,
    mapping_synced,
    ready_of,
    source_progressing,
    source_synced,
    source_waiting,
)
from httpsync.engine.client import SourceClient
from httpsync.engine.mapping import Mapper
from httpsync.engine.runner import retry_deferred, run_source
from httpsync.engine.sync import SyncStopped, sync_mapping
from httpsync.errors import ConfigError, EngineError, SinkError
from httpsync.http.policy import DestinationPolicy
from httpsync.http.redact import redact
from httpsync.http.retry import ServerWait
from httpsync.http.transport import TransportPool
from httpsync.sinks.factory import Sinks

REPORTED_WAIT_SECONDS = 10.0  # a shorter wait the API asks for is not worth a status write

log = logging.getLogger("httpsync.controller")


@dataclass(slots=True)
class _Running:
    source: tuple[str, str]
    stop: asyncio.Event = field(default_factory=asyncio.Event)
    done: asyncio.Event = field(default_factory=asyncio.Event)


class Reconciler:
    def __init__(self, config: OperatorConfig, kube: KubeApi, sinks: Sinks, metrics: Metrics) -> None:
        self.config = config
        self.kube = kube
        self.sinks = sinks
        self.metrics = metrics
        self.writer = StatusWriter(kube)
        self.policy = DestinationPolicy(allow=config.destination_allow, deny=config.destination_deny)
        # One connection pool per TLS setting for every source: a sync reuses the last one's connections.
        self.transports = TransportPool(policy=self.policy)
        # The mapping syncs under way, by mapping uid: their stop signal, their source, and when they end.
        self.running: dict[str, _Running] = {}
        # Mappings being deleted (by uid: a new mapping of the same name is another object): never synced again.
        self.deleting: set[str] = set()
        self.mappers: dict[str, tuple[int, Mapper]] = {}  # uid -> (generation, compiled mapping)

    async def reconcile(
        self,
        source: SourceObject,
        mappings: Sequence[MappingObject],
        *,
        schedule: Callable[[float], float] | None = None,
    ) -> float:
        """Sync every mapping of a source once and write every status. Returns the interval.

        ``schedule(interval)`` gives the next sync's time: it is written in the same status patch as
        the sync's outcome (one write per object per sync)."""
        await self.writer.source(source.meta, source_progressing(source, len(mappings)))
        outcomes, source_error = await self.run(source, mappings)
        now = iso(time.time())
        for outcome in outcomes:
            if outcome.mapping.meta.uid in self.deleting:
                continue  # its finalizer owns it now
            status = mapping_synced(outcome, now)
            await self.writer.mapping(outcome.mapping.meta, status)
            events.on_transition(outcome.mapping.body, ready_of(outcome.mapping.status), ready_of(status))
            _report_conflicts(outcome)
        next_sync = iso(schedule(source.interval_seconds)) if schedule is not None else None
        status = source_synced(source, outcomes, now, source_error=source_error, next_sync_time=next_sync)
        await self.writer.source(source.meta, status)
        events.on_transition(source.body, ready_of(source.status), ready_of(status))
        ready = ready_of(status)
        self.metrics.source_state(
            *source.key,
            ready=ready.get("status") == "True",
            since=parse_iso(ready.get("lastTransitionTime")) or time.time(),
            interval=source.interval_seconds,
        )
        for outcome in outcomes:
            self.metrics.mapping_interval.labels(outcome.mapping.namespace, outcome.mapping.name).set(
                source.interval_seconds
            )
        level = logging.INFO if ready.get("status") == "True" else logging.WARNING
        log.log(level, "source %s/%s: %s: %s", *source.key, ready.get("reason"), ready.get("message"))
        return source.interval_seconds

    async def run(
        self, source: SourceObject, mappings: Sequence[MappingObject]
    ) -> tuple[list[MappingOutcome], EngineError | None]:
        """Run the mappings through the engine's per-source runner. A failure of the source itself
        (invalid spec, denied destination, missing Secret, sink) is returned beside an error outcome
        for every mapping; a mapping's own failure is its own outcome."""
        try:
            if source.spec is None:
                raise ConfigError(source.spec_error or "spec is invalid")
            outcomes, source_failures = await self._run(source, source.spec, mappings)
        except EngineError as e:
            return [MappingOutcome(m, None, e) for m in mappings], e
        except Exception as e:  # never let an unexpected error leak secrets or kill the loop
            log.exception("source %s/%s: unexpected error", *source.key)
            error = EngineError(redact(f"{type(e).__name__}: {e}"))
            return [MappingOutcome(m, None, error) for m in mappings], error
        # The runner turns a failure of the source (no client: missing Secret, bad TLS settings...)
        # into the same error for every mapping, through its ``failed`` factory.
        runnable = [o for o in outcomes if o.mapping.spec is not None]
        first = runnable[0].error if runnable else None
        if first is not None and id(first) in source_failures and all(o.error is first for o in runnable):
            return outcomes, first
        return outcomes, None

    async def _run(
        self, source: SourceObject, spec: HttpSourceSpec, mappings: Sequence[MappingObject]
    ) -> tuple[list[MappingOutcome], set[int]]:
        """The outcomes, and the ids of the errors the runner gave for a failure of the source."""
        namespace, name = source.key
        source_failures: set[int] = set()

        def failed(mapping: MappingObject, error: EngineError) -> MappingOutcome:
            source_failures.add(id(error))
            return MappingOutcome(mapping, None, error)

        self.policy.check(spec.base_url)
        secrets = KubeSecrets(self.kube, namespace)
        counter = self.metrics.http_requests

        def on_response(code: int | None) -> None:
            counter.labels(namespace, name, str(code or 0)).inc()

        said: list[float] = []
        waits: list[asyncio.Future[bool]] = []  # status writes that do not hold up the sync

        def on_wait(wait: ServerWait) -> None:
            """A long wait the API asked for: say so on the source (Reconciling), once per sync and wait."""
            if wait.seconds < REPORTED_WAIT_SECONDS or (said and said[-1] >= wait.until - 1):
                return
            said.append(wait.until)
            waits.append(asyncio.ensure_future(self.writer.source(source.meta, source_waiting(source, wait.message))))

        async with self.sinks.for_source(spec.sink, secrets, name) as target:

            async def work(client: SourceClient, m: MappingObject) -> MappingOutcome:
                assert m.spec is not None
                if m.meta.uid in self.deleting:  # never write for a mapping being deleted
                    return MappingOutcome(m, None, SyncStopped())
                pagination = m.spec.pagination or spec.pagination
                running = self.running[m.meta.uid] = _Running(source.key)
                try:
                    result = await sync_mapping(
                        client, m.name, m.spec, pagination, target.sink, target.state, owner=m.owner,
                        stop=running.stop, mapper=self._mapper(m),
                    )  # fmt: skip
                finally:
                    del self.running[m.meta.uid]
                    running.done.set()
                self._observe(m, result)
                return MappingOutcome(m, result)

            runnable = [m for m in mappings if m.spec is not None]
            ran = await run_source(
                spec,
                runnable,
                secrets,
                work,
                failed,
                concurrency=self.config.mapping_concurrency,
                check_url=self.policy.check,
                on_response=on_response,
                on_wait=on_wait,
                transports=self.transports,
            )
            # Entities the sink deferred (a related entity, maybe another mapping's, did not exist yet)
            # go once more now that every mapping of the source has pushed, before the sync is judged.
            await retry_deferred(
                target.sink, target.state, [(o.mapping.owner, o.result) for o in ran if o.result is not None]
            )
        # A "waiting for the rate limit" write must land before the outcome's, never after it.
        await asyncio.gather(*waits, return_exceptions=True)
        by_name = {o.mapping.name: o for o in ran}
        outcomes = [
            by_name.get(m.name) or MappingOutcome(m, None, ConfigError(m.spec_error or "spec is invalid"))
            for m in mappings
        ]
        return outcomes, source_failures

    def _mapper(self, m: MappingObject) -> Mapper | None:
        """The mapping's compiled jq, once per generation (compiling costs milliseconds a sync). None
        when it does not compile: the sync then reports the error as its own."""
        cached = self.mappers.get(m.meta.uid)
        if cached is not None and cached[0] == m.meta.generation:
            return cached[1]
        assert m.spec is not None
        try:
            mapper = Mapper.from_spec(m.spec)
        except EngineError:
            self.mappers.pop(m.meta.uid, None)
            return None
        self.mappers[m.meta.uid] = (m.meta.generation, mapper)
        return mapper

    def forget(self, uid: str) -> None:
        """A mapping is gone: drop what is cached for it."""
        self.mappers.pop(uid, None)

    def _observe(self, mapping: MappingObject, result: EndpointResult) -> None:
        self.metrics.entities_conflicting.labels(mapping.namespace, mapping.name).set(result.entities_conflicting)
        m, ns, name = self.metrics, mapping.namespace, mapping.name
        m.sync_duration.labels(ns, mapping.source_name, name).observe(result.duration_seconds)
        m.syncs.labels(ns, mapping.source_name, name, result.outcome).inc()
        m.items_fetched.labels(ns, name).inc(result.items_fetched)
        m.entities_upserted.labels(ns, name).inc(result.entities_upserted)
        m.entities_deleted.labels(ns, name).inc(result.entities_deleted)
        m.sync_result(
            ns, name,
            deletion_blocked=bool(result.deletion_blocked),
            sink_errors=result.entities_failed + (1 if result.reason == "SinkFailed" else 0),
        )  # fmt: skip
        if result.succeeded:
            m.last_success.labels(ns, name).set(time.time())
            if not result.deletion_blocked:
                owned = result.entities_owned
                m.entity_count.labels(ns, name).set(owned)

    # ------------------------------------------------------------------ deletion

    def stop_source(self, key: tuple[str, str]) -> int:
        """Ask every mapping sync under way for this source to stop at its next batch boundary
        (the source is going away). Returns how many were asked."""
        asked = [r for r in self.running.values() if r.source == key]
        for r in asked:
            r.stop.set()
        return len(asked)

    async def delete_mapping_entities(self, mapping: MappingObject) -> int:
        """Remove a deleted mapping's entities from the sink, unless its policy says Keep.

        A sync of this mapping under way is stopped first (it ends at its next batch boundary, with
        the sink and the state in agreement) and no new one starts, so nothing is written for the
        mapping after its entities are removed. Delete first, forget after: a failed delete is
        retried with the memory intact."""
        self.deleting.add(mapping.meta.uid)
        running = self.running.get(mapping.meta.uid)
        if running is not None:
            running.stop.set()
            await running.done.wait()
        owner = mapping.owner
        self.metrics.forget_mapping(mapping.namespace, mapping.name)
        self.forget(mapping.meta.uid)
        sink_spec = None
        raw = await self.kube.get(SOURCES, mapping.namespace, mapping.source_name)
        if raw is not None:
            source = SourceObject.from_body(raw)
            sink_spec = source.spec.sink if source.spec is not None else None
        async with self.sinks.for_source(sink_spec, KubeSecrets(self.kube, mapping.namespace), owner) as target:
            if mapping.deletion_policy == "Keep":
                await target.state.forget(owner)
                return 0
            # What another mapping still produces stays (it writes it again as its own next sync).
            refs = [ref async for ref in target.state.owned_exclusively(owner)]
            if refs:
                report = await target.sink.delete(owner, refs)
                if report.failed:
                    raise SinkError(f"{len(report.failed)} of {len(refs)} entities could not be deleted")
            await target.state.forget(owner)
            return len(refs)


def _report_conflicts(outcome: MappingOutcome) -> None:
    """An Event when a mapping starts sharing entities with another mapping (each of the two reports
    its side): the same blueprint+identifier from two mappings is usually a mistake in one of them."""
    result = outcome.result
    if result is None or not result.entities_conflicting:
        return
    before = outcome.mapping.status.last_sync
    if before is not None and before.entities_conflicting:
        return  # said already
    sample = next((s for s in result.mapping_errors.samples if "also produced by" in s), "")
    events.warning(
        outcome.mapping.body,
        "OwnershipConflict",
        f"{result.entities_conflicting} entities are also produced by another mapping; each is kept while either "
        f"produces it. {sample}".strip(),
    )
