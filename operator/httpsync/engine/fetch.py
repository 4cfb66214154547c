"""Fetch the items of one endpoint mapping, page by page, as they arrive.

:func:`iter_pages` yields the items of each page (already extracted with ``selector.dataPath``)
in page order, holding only a bounded number of pages. A ``kind`` with ``{param}`` placeholders
is a nested endpoint: the values of each placeholder come from its ``selector.pathParameters``
endpoint (fully paginated, placeholders resolved in dependency order), and the child endpoint is
fetched once per combination of values, concurrently (bounded), each child item getting
``__<param>`` fields.

Pages are fetched ahead of the consumer, so the network and the mapping overlap:

- the next page is requested as soon as the current one is parsed, before it is yielded (every
  pagination style: cursors and links included);
- offset and page pagination with a known page list (``totalPath``, or ``lastPagePath`` giving the
  last page's number) request the remaining pages concurrently after the first one, and with
  ``pagination.prefetch`` they speculate that many pages ahead without a total.

The source's client bounds the requests in flight (``maxConcurrentRequests``) and their rate
(``requestsPerSecond``), for pages fetched ahead and for a nested endpoint's children alike: they
all share it. What is fetched ahead is bounded too (:func:`pages_ahead` pages per iteration,
parents and children of a nested endpoint together). A page is used only when the paginator, fed
the pages in order, asks for exactly its request; anything else (beyond the last page, after a
short page) is cancelled or discarded unseen, so pages, counts and errors are those of fetching
one page after another (``FetchCounters.requests`` does count the discarded requests).

A path parameter endpoint that several mappings of one source use (same method, endpoint, query
parameters, headers, dataPath and pagination) is fetched once per sync of the source: the client's
:class:`ParentCache`, made by the runner, fetches it in a task of its own and every such mapping reads
its pages as they arrive; a failure of that fetch fails each of them, as if each had fetched it.

Any failure, in a parent or in any child, fails the whole iteration: a partial fetch never looks
like a complete one. Requests still outstanding are cancelled when the iteration fails or the
consumer stops early.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections import Counter, deque
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import httpx

from httpsync.api.models import HttpEndpointMappingSpec, PaginationSpec
from httpsync.engine import jqfast, jsoncodec, workers
from httpsync.engine.jqutil import all_exact, compile_jq, first_exact, jq_error_line, json_type, normalize_path
from httpsync.engine.pagination import Count, PageRequest, PaginationPlan, a_json_type
from httpsync.engine.url import fill_placeholders, format_param_value, merge_query, placeholder_names
from httpsync.errors import (
    ConfigError,
    DataPathError,
    IncompleteFetchError,
    ResponseFormatError,
    ResponseTooDeepError,
)
from httpsync.http.redact import redact

if TYPE_CHECKING:  # the worker processes import this module without the HTTP client
    from httpsync.engine.client import SourceClient

MAX_KEYS_SHOWN = 20
# Child fetches at once, whatever maxConcurrentRequests says: each holds a page in memory, and the
# client's semaphore bounds the requests anyway.
MAX_FAN_OUT = 64
# Pages requested ahead of the consumer, at most (see pages_ahead).
MAX_PAGES_AHEAD = 64
MAX_ITEMS_AHEAD = 20_000


def pages_ahead(max_concurrent_requests: int, page_size: int) -> int:
    """How many pages one iteration may have requested and not yet yielded: twice
    ``maxConcurrentRequests`` (responses keep arriving while the consumer works on earlier ones),
    within :data:`MAX_PAGES_AHEAD` pages and :data:`MAX_ITEMS_AHEAD` items of ``pageSize``, and at
    least 2 (the page being awaited and the next one)."""
    return max(2, min(2 * max_concurrent_requests, MAX_PAGES_AHEAD, MAX_ITEMS_AHEAD // page_size))


@dataclass(slots=True)
class FetchCounters:
    """What fetching one endpoint mapping did. ``requests`` counts every attempt (parents and retries
    included); ``pages`` and ``items_fetched`` count the mapping's own pages and items."""

    requests: int = 0
    pages: int = 0
    items_fetched: int = 0
    parent_pages: int = 0  # pages of path parameter endpoints (nested kinds)
    parents: int = 0  # combinations of path parameter values whose child endpoint was fetched


# --------------------------------------------------------------------------- compiled plan


@dataclass(frozen=True, slots=True)
class DataPath:
    """A compiled ``dataPath``: where the array of items is in a response."""

    field: str
    expr: str | None
    program: Any
    steps: tuple[str | int, ...] | None = None  # a plain path, walked in Python (jqfast)
    single_object: bool = False  # an object found is the one item (selector.singleObject)

    @classmethod
    def compile(cls, expr: str | None, field: str, *, single_object: bool = False) -> DataPath:
        if expr is None or expr.strip() in ("", "."):
            return cls(field, None, None, single_object=single_object)
        normalized = normalize_path(expr)
        return cls(field, expr, compile_jq(normalized, field), jqfast.plain_path(normalized), single_object)

    def extract(self, body: Any, where: str) -> list[Any]:
        """The items of ``body``; ``where`` (``GET <url>``) names the response in errors.

        A plain path is walked in Python when jq would give the same value (:func:`jqfast.plain_json`);
        jq handles everything else, errors included, so its messages stay the same."""
        if self.program is None:
            value = body
        else:
            value = self._walk(body)
            if value is _NOT_WALKED:
                value = self._jq(body, where)
        if isinstance(value, list):
            return value
        if self.single_object and isinstance(value, dict):
            return [value]
        shown = repr(self.expr) if self.expr else "'.' (the default)"
        if self.single_object:
            hint = "; selector.singleObject takes an object or an array"
        elif isinstance(value, dict) and self.field == "selector.dataPath":
            hint = (
                "; set it to the array's path, or '[.]' (or selector.singleObject: true) to take the response as "
                "one item"
                if not self.expr
                else "; set selector.singleObject: true to take the object as one item"
            )
        else:
            hint = "" if self.expr else "; set it to the array's path, or '[.]' to take the response as one item"
        raise DataPathError(
            f"{self.field} {shown} found {json_type(value)}, not an array, in the response of {where}"
            f"{_keys_hint(body)}{hint}"
        )

    def _walk(self, body: Any) -> Any:
        """The value of a plain path over a body jq would give back unchanged, or ``_NOT_WALKED``."""
        if self.steps is None or not jqfast.plain_json(body):
            return _NOT_WALKED
        try:
            return jqfast.walk(body, self.steps)
        except jqfast.Fallback:
            return _NOT_WALKED  # an error (indexing a non-object ...): jq says which

    def _jq(self, body: Any, where: str) -> Any:
        try:
            outputs = all_exact(self.program, body)
        except RecursionError:
            if self.steps is not None:
                with contextlib.suppress(jqfast.Fallback):
                    return jqfast.walk(body, self.steps)
            raise ResponseTooDeepError(
                f"{self.field} {self.expr!r} cannot run on the response of {where}: it is nested too deeply"
            ) from None
        except ValueError as e:
            if jsoncodec.has_lone_surrogate(body):
                return self._unreadable(body, where)
            detail = redact(jq_error_line(e))
            raise DataPathError(
                f"{self.field} {self.expr!r} failed on the response of {where} ({a_json_type(body)}): "
                f"{detail}{_keys_hint(body)}"
            ) from None
        if len(outputs) != 1:
            raise DataPathError(
                f"{self.field} {self.expr!r} gave {len(outputs)} values, not one array, in the response "
                f"of {where}; wrap it in [ ] to collect them{_keys_hint(body)}"
            )
        return outputs[0]

    def _unreadable(self, body: Any, where: str) -> Any:
        """The items of a body jq cannot read (a lone surrogate somewhere): a plain path is walked in
        Python, so only the items holding one fail (the mapper reports them); jq paths cannot."""
        if self.steps is not None:
            with contextlib.suppress(jqfast.Fallback):
                return jqfast.walk(body, self.steps)
        raise ResponseFormatError(
            f"{self.field} {self.expr!r} cannot run on the response of {where}: it holds "
            f"{jsoncodec.LONE_SURROGATE}, and jq refuses the whole response; a plain path "
            "(such as .items) skips only the items holding one"
        )


_NOT_WALKED = object()


def _number(value: float) -> str:
    return str(int(value)) if value.is_integer() else str(value)


def _keys_hint(body: Any) -> str:
    if not isinstance(body, dict):
        return ""
    keys = list(body)
    shown = ", ".join(redact(str(k)) for k in keys[:MAX_KEYS_SHOWN])
    more = f", ... ({len(keys)} keys)" if len(keys) > MAX_KEYS_SHOWN else ""
    return f"; top-level keys: {shown or '(none)'}{more}"


@dataclass(frozen=True, slots=True)
class EndpointRequest:
    """How to request the pages of one endpoint (the mapping's, or a path parameter's)."""

    field: str  # spec field prefix for messages: selector or selector.pathParameters.<name>
    template: str  # endpoint path, maybe with placeholders
    method: str
    params: dict[str, str]
    headers: dict[str, str]
    body: Any
    data_path: DataPath


@dataclass(frozen=True, slots=True)
class PathParameter:
    name: str
    request: EndpointRequest
    field: Any  # compiled jq
    field_expr: str
    filter: Any | None  # compiled jq
    depends_on: tuple[str, ...]  # placeholders of its endpoint


@dataclass(frozen=True, slots=True)
class FetchPlan:
    """Everything :func:`iter_pages` needs, compiled once (invalid jq and bad placeholders fail here)."""

    request: EndpointRequest
    parameters: tuple[PathParameter, ...]  # in dependency order
    pagination: PaginationPlan
    text: str = ""  # the specs as JSON, for worker processes (empty: pages are processed here)
    jq_fields: tuple[tuple[str, str], ...] = ()  # (field, jq) of every expression, for timeout messages

    @classmethod
    def compile(
        cls, mapping: HttpEndpointMappingSpec, pagination: PaginationSpec, *, for_workers: bool = False
    ) -> FetchPlan:
        selector = mapping.selector
        request = EndpointRequest(
            field="selector",
            template=mapping.kind,
            method=selector.method.value,
            params=dict(selector.query_params),
            headers=dict(selector.headers),
            body=selector.body,
            data_path=DataPath.compile(selector.data_path, "selector.dataPath", single_object=selector.single_object),
        )
        order = _dependency_order(mapping)
        parameters = []
        for name in order:
            spec = selector.path_parameters[name]
            prefix = f"selector.pathParameters.{name}"
            parameters.append(
                PathParameter(
                    name=name,
                    request=EndpointRequest(
                        field=prefix,
                        template=spec.endpoint,
                        method=spec.method.value,
                        params=dict(spec.query_params),
                        headers=dict(spec.headers),
                        body=None,
                        data_path=DataPath.compile(spec.data_path, f"{prefix}.dataPath"),
                    ),
                    field=compile_jq(normalize_path(spec.field), f"{prefix}.field"),
                    field_expr=spec.field,
                    filter=compile_jq(spec.filter, f"{prefix}.filter") if spec.filter else None,
                    depends_on=tuple(placeholder_names(spec.endpoint)),
                )
            )
        plan = PaginationPlan.compile(pagination)
        if not for_workers:
            return cls(request, tuple(parameters), plan)
        text = json.dumps({"mapping": mapping.to_wire(), "pagination": pagination.to_wire()}, sort_keys=True)
        m = mapping.mappings
        jq_fields = [("selector.query", mapping.selector.query), ("selector.dataPath", selector.data_path or "")]
        jq_fields += [("itemsToParse", mapping.items_to_parse or "")]
        keys = ("identifier", "blueprint", "title", "team", "icon")
        jq_fields += [(f"mappings.{k}", getattr(m, k) or "") for k in keys]
        jq_fields += [(f"mappings.properties.{k}", v) for k, v in m.properties.items()]
        jq_fields += [(f"mappings.relations.{k}", v) for k, v in m.relations.items()]
        jq_fields += [(p.field, p.expr) for p in plan.paths()]
        return cls(request, tuple(parameters), plan, text, tuple((f, e) for f, e in jq_fields if e))


async def _in_worker(
    pool: workers.WorkerPool, task: workers.PageTask, client: SourceClient, plan: FetchPlan
) -> workers.PageOutcome:
    """``task`` in the pool, its deadline the source's ``mappingTimeoutSeconds``; clear errors."""
    timeout = client.spec.mapping_timeout_seconds
    try:
        return await pool.run(task, timeout)
    except workers.MappingTimeoutError:
        hint = workers.slow_field_hint(list(plan.jq_fields))
        raise workers.MappingTimeoutError(
            f"processing the page of {task.where} took longer than spec.mappingTimeoutSeconds ({timeout:g}s), "
            f"so its worker was stopped{hint}: a jq expression that does not end, or a page too large to map "
            "in time (raise spec.mappingTimeoutSeconds or lower pagination.pageSize)"
        ) from None
    except workers.MappingMemoryError as e:
        raise workers.MappingMemoryError(
            f"the worker processing the page of {task.where} ran out of memory ({e.message}; its limit: "
            f"{pool.memory_mb} MiB, --worker-memory / {workers.WORKER_MEMORY_ENV}): a jq expression that builds "
            "huge values, or a page too large (lower pagination.pageSize or spec.maxResponseBytes)"
        ) from None


def _dependency_order(mapping: HttpEndpointMappingSpec) -> list[str]:
    """The placeholders ``kind`` needs (directly or through parameter endpoints), each after the
    placeholders its own endpoint uses."""
    params = mapping.selector.path_parameters
    order: list[str] = []
    visiting: list[str] = []

    def visit(name: str, needed_by: str) -> None:
        if name in order:
            return
        if name in visiting:
            cycle = " -> ".join([*visiting[visiting.index(name) :], name])
            raise ConfigError(f"selector.pathParameters: the endpoints depend on each other in a cycle ({cycle})")
        if name not in params:
            raise ConfigError(f"{needed_by} uses the placeholder {{{name}}}: add selector.pathParameters.{name}")
        visiting.append(name)
        for dep in placeholder_names(params[name].endpoint):
            visit(dep, f"selector.pathParameters.{name}.endpoint {params[name].endpoint!r}")
        visiting.pop()
        order.append(name)

    for name in placeholder_names(mapping.kind):
        visit(name, f"kind {mapping.kind!r}")
    return order


# --------------------------------------------------------------------------- the per-sync parent cache


def _request_key(request: EndpointRequest, pagination: PaginationSpec, template: str | None = None) -> str:
    """What makes two path parameter endpoints fetch the same pages (``template``: the endpoint with
    its placeholders filled)."""
    return json.dumps(
        [
            request.method,
            request.template if template is None else template,
            sorted(request.params.items()),
            sorted((k.lower(), v) for k, v in request.headers.items()),
            request.data_path.expr,
            pagination.to_wire(),
        ]
    )


class _CacheEntry:
    """One shared parent endpoint: its pages so far, fetched by a task of its own."""

    __slots__ = ("error", "grew", "pages", "readers", "state", "task")

    def __init__(self, readers: int) -> None:
        self.readers = readers  # mappings yet to finish reading it
        self.pages: list[list[Any]] = []
        self.state = "fetching"  # then "done" or "failed"
        self.error: Exception | None = None  # why it failed
        self.grew = asyncio.Event()
        self.task: asyncio.Task[None] | None = None

    def changed(self) -> None:
        self.grew.set()
        self.grew = asyncio.Event()


@dataclass
class ParentCache:
    """Path parameter endpoints shared by several mappings of one source, fetched once per sync.

    Made by the runner for one sync of a source (:meth:`for_mappings`), put on its client as
    ``parent_cache`` and closed (:meth:`aclose`) before the client. Only endpoints two or more
    mappings use are kept, each until every one of those mappings has read it. The first mapping to
    need one starts a task fetching all its pages; every mapping, the first included, reads the pages
    as they arrive. The task depends on no mapping's pace, so no mapping ever waits for another one
    (two mappings waiting for each other's parents would otherwise be possible). ``fetches`` and
    ``hits`` count the fetches made and saved."""

    shared: Counter[str]  # request key (placeholders unfilled) -> mappings using it
    entries: dict[str, _CacheEntry] = field(default_factory=dict)
    fetches: int = 0
    hits: int = 0

    @classmethod
    def for_mappings(
        cls, mappings: Iterable[HttpEndpointMappingSpec], default_pagination: PaginationSpec
    ) -> ParentCache | None:
        """The cache of one sync of these mappings; None when no parent endpoint is shared. A
        mapping that does not compile is left out (its sync reports why)."""
        counts: Counter[str] = Counter()
        for spec in mappings:
            pagination = spec.pagination or default_pagination
            try:
                plan = FetchPlan.compile(spec, pagination)
            except Exception:
                continue
            counts.update({_request_key(p.request, pagination) for p in plan.parameters})
        shared = Counter({k: n for k, n in counts.items() if n >= 2})
        return cls(shared) if shared else None

    def release(self, key: str, entry: _CacheEntry) -> None:
        """One mapping is done with ``entry``: once every one is, forget it (and stop its fetch)."""
        entry.readers -= 1
        if entry.readers <= 0:
            if self.entries.get(key) is entry:
                del self.entries[key]
            if entry.task is not None:
                entry.task.cancel()

    async def aclose(self) -> None:
        """Stop the fetches still running (their mappings failed or stopped early)."""
        tasks = [e.task for e in self.entries.values() if e.task is not None]
        self.entries.clear()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def _fill(cache: ParentCache, key: str, entry: _CacheEntry, pages: AsyncIterator[list[Any]]) -> None:
    """Fetch every page of a shared parent into ``entry``."""
    try:
        async with contextlib.aclosing(pages):
            async for items in pages:
                entry.pages.append(items)
                entry.changed()
        entry.state = "done"
    except Exception as e:
        entry.state, entry.error = "failed", e  # every mapping reading it fails with it
    finally:
        entry.changed()


async def _parent_pages(
    client: SourceClient,
    plan: FetchPlan,
    request: EndpointRequest,
    binding: dict[str, Any],
    counters: FetchCounters,
    budget: _Budget,
    *,
    role: str,
) -> AsyncIterator[tuple[list[Any], bool]]:
    """The pages of a path parameter endpoint, as (list, pooled): the parameter ``role``'s values of
    its items when a worker computed them (pooled), else the items. Read from the client's parent
    cache when other mappings of this sync use the endpoint too (then the items themselves: each
    mapping reads its own values from them), else fetched. A shared fetch that fails raises its
    error in every mapping reading it, as if each had fetched it."""
    cache: ParentCache | None = getattr(client, "parent_cache", None)
    base = _request_key(request, plan.pagination.spec) if cache is not None else ""
    if cache is None or base not in cache.shared:
        own = _endpoint_pages(client, plan, request, binding, counters, budget, main=False, role=role)
        pooled = client.pool is not None and bool(plan.text)
        async with contextlib.aclosing(own) as pages:
            async for items in pages:
                yield items, pooled
        return
    key = _request_key(request, plan.pagination.spec, fill_placeholders(request.template, binding))
    entry = cache.entries.get(key)
    if entry is None:
        entry = cache.entries[key] = _CacheEntry(cache.shared[base])
        ahead = _Budget(pages_ahead(client.spec.max_concurrent_requests, plan.pagination.spec.page_size) - 1)
        raw = _endpoint_pages(client, plan, request, binding, counters, ahead, main=False, raw=True)
        entry.task = asyncio.create_task(_fill(cache, key, entry, raw), name="httpsync-shared-parent")
        cache.fetches += 1
    else:
        cache.hits += 1
    try:
        i = 0
        while True:
            if i < len(entry.pages):
                i += 1
                yield entry.pages[i - 1], False
            elif entry.state == "done":
                return
            elif entry.error is not None:
                raise entry.error
            else:
                await entry.grew.wait()
    finally:
        cache.release(key, entry)


# --------------------------------------------------------------------------- fetching


class _Budget:
    """Pages one iteration may request beyond the next page of each endpoint it walks (shared by
    the parents and children of a nested endpoint): taken when such a page is requested, given
    back when it becomes the next page or is discarded. The next page itself needs none: each
    endpoint always has it requested."""

    __slots__ = ("free",)

    def __init__(self, free: int) -> None:
        self.free = free


_Fetched = tuple[Any, httpx.Response, str]  # body, response, where (GET <url>, for messages)


@dataclass(slots=True)
class _Ahead:
    """A page requested ahead: its request, the task fetching it, whether it holds a budget unit."""

    request: PageRequest
    task: asyncio.Task[_Fetched]
    budgeted: bool


async def _endpoint_pages(
    client: SourceClient,
    plan: FetchPlan,
    request: EndpointRequest,
    values: dict[str, Any],
    counters: FetchCounters,
    budget: _Budget,
    *,
    main: bool,
    role: str = "main",
    raw: bool = False,
) -> AsyncIterator[Any]:
    """The item lists of every page of one endpoint, its placeholders filled from ``values``, in
    page order. Close it (``aclosing``) to cancel what it requested ahead.

    With a worker pool (``client.pool``, see :mod:`httpsync.engine.workers`) each page is decoded and
    processed in a worker as soon as it arrives (pages fetched ahead in parallel): the main endpoint
    then yields mapped pages (:class:`~httpsync.engine.mapping.PageResult`), a path parameter's
    endpoint (``role``: its name) the parameter values of its items (None: skipped)."""
    url = client.url_for(fill_placeholders(request.template, values))
    paginator = plan.pagination.start(url, request.params, display=client.display)
    # ``raw``: the items themselves, decoded here (a parent shared by several mappings, see _parent_pages).
    pool = client.pool if plan.text and not raw else None

    async def fetch(page: PageRequest) -> _Fetched:
        page_url, params = page
        where = f"{request.method} {client.display(merge_query(page_url, params))}"
        kwargs: dict[str, Any] = {
            "params": params, "headers": request.headers, "json_body": request.body, "counter": counters
        }  # fmt: skip
        if pool is None:
            body, response = await client.get_json(request.method, page_url, **kwargs)
            return body, response, where
        response = await client.get_page(request.method, page_url, **kwargs)
        task = workers.PageTask(
            plan.text,
            role,
            response.content,
            where,
            binding=values if role == "main" and plan.parameters else {},
            param_where=f"{request.method} {client.display(client.url_for(request.template))}",
        )
        outcome = await _in_worker(pool, task, client, plan)
        if outcome.json_error is not None:
            raise client.json_error(request.method, page_url, response, outcome.json_error)
        if outcome.error is not None:
            raise outcome.error
        return outcome, response, where

    def launch(page: PageRequest, budgeted: bool) -> _Ahead:
        return _Ahead(page, asyncio.create_task(fetch(page), name="httpsync-page"), budgeted)

    ahead: deque[_Ahead] = deque()  # requested, in page order; ahead[0] is the next page (no budget)
    dropped: set[asyncio.Task[_Fetched]] = set()  # cancelled, not finished yet

    def forget(task: asyncio.Task[_Fetched]) -> None:
        dropped.discard(task)
        if not task.cancelled():
            task.exception()  # retrieved: the failure of a page never used is no failure

    def drop_from(keep: int) -> None:
        while len(ahead) > keep:
            page = ahead.pop()
            if page.budgeted:
                budget.free += 1
            page.task.cancel()
            dropped.add(page.task)
            page.task.add_done_callback(forget)

    current = launch(paginator.first_request(), False)
    try:
        while True:
            body, response, where = await current.task
            if pool is None:
                # dataPath and pagination paths together: jqfast checks each body once (plain_json).
                items = request.data_path.extract(body, where)
                page = paginator.next_request(response, body, items)
                count = len(items)
            else:
                outcome: workers.PageOutcome = body
                page = paginator.next_request(response, outcome.view, Count(outcome.items))
                items = outcome.page if role == "main" else outcome.values
                count = outcome.items
            del body
            if main:
                counters.pages += 1
                counters.items_fetched += count
            else:
                counters.parent_pages += 1
            if page is None:
                drop_from(0)  # guesses beyond the last page
            else:
                # Keep what was requested ahead as long as it is what the paginator expects now.
                wanted = [page, *paginator.upcoming(len(ahead) + budget.free)]
                keep = 0
                while keep < min(len(ahead), len(wanted)) and ahead[keep].request == wanted[keep]:
                    keep += 1
                drop_from(keep)
                launched = False
                for nxt in wanted[len(ahead) :]:
                    if not ahead:
                        ahead.append(launch(nxt, False))  # the next page: always, before yielding this one
                    elif budget.free > 0:
                        budget.free -= 1
                        ahead.append(launch(nxt, True))
                    else:
                        break
                    launched = True
                if launched:
                    # Let the new requests go out now, not when the consumer next awaits something:
                    # mapping a page may not await at all.
                    await asyncio.sleep(0)
            yield items
            if paginator.stopped is not None:  # maxPages or empty pages: this page counted, the run fails
                raise paginator.stopped
            if not ahead:
                if paginator.shortfall is not None:
                    received, announced = paginator.shortfall
                    raise IncompleteFetchError(
                        f"{where}: the pages ended after {received} items, but the API announced "
                        f"{_number(announced)} (pagination.totalPath {plan.pagination.spec.total_path!r}); "
                        "the data is incomplete, so nothing was deleted"
                    )
                return
            current = ahead.popleft()
            if ahead and ahead[0].budgeted:  # the new next page
                ahead[0].budgeted = False
                budget.free += 1
    finally:
        current.task.cancel()
        drop_from(0)
        await asyncio.gather(current.task, *dropped, return_exceptions=True)


def _parameter_value(parameter: PathParameter, item: Any, where: str) -> Any:
    """The placeholder value of one parent item; None to skip the item."""
    prefix = f"selector.pathParameters.{parameter.name}"
    try:
        text = json.dumps(item)
        if parameter.filter is not None and first_exact(parameter.filter, text) is not True:
            return None
        value = first_exact(parameter.field, text)
    except StopIteration:
        return None
    except ValueError as e:
        detail = redact(jq_error_line(e))
        raise ResponseFormatError(f"{prefix}: jq failed on an item of {where}: {detail}") from None
    if value is None:
        return None
    try:
        format_param_value(value)
    except ValueError:
        raise ResponseFormatError(
            f"{prefix}.field {parameter.field_expr!r} gave {a_json_type(value)} for an item of {where}; "
            "a path parameter needs a string, number or boolean"
        ) from None
    return value


class _Combinations:
    """Every combination of path parameter values, parents fetched as needed (streamed)."""

    def __init__(self, client: SourceClient, plan: FetchPlan, counters: FetchCounters, budget: _Budget) -> None:
        self.client = client
        self.plan = plan
        self.counters = counters
        self.budget = budget
        self._independent: dict[str, list[Any]] = {}  # values of parameters without dependencies

    async def _values(self, parameter: PathParameter, binding: dict[str, Any]) -> AsyncIterator[Any]:
        seen: set[str] = set()
        request = parameter.request
        pages = _parent_pages(
            self.client, self.plan, request, binding, self.counters, self.budget, role=parameter.name
        )
        async with contextlib.aclosing(pages):
            async for items, pooled in pages:
                where = f"{request.method} {self.client.display(self.client.url_for(request.template))}"
                for item in items:
                    value = item if pooled else _parameter_value(parameter, item, where)
                    if value is None:
                        continue
                    key = format_param_value(value)
                    if key not in seen:  # the same parent twice would fetch its children twice
                        seen.add(key)
                        yield value

    async def _cached_values(self, parameter: PathParameter) -> list[Any]:
        if parameter.name not in self._independent:
            async with contextlib.aclosing(self._values(parameter, {})) as values:
                self._independent[parameter.name] = [v async for v in values]
        return self._independent[parameter.name]

    async def iterate(self, index: int = 0, binding: dict[str, Any] | None = None) -> AsyncIterator[dict[str, Any]]:
        binding = binding or {}
        parameters = self.plan.parameters
        if index == len(parameters):
            yield binding
            return
        parameter = parameters[index]
        if index > 0 and not parameter.depends_on:
            # Independent of the earlier parameters: fetch its values once, not once per combination.
            for value in await self._cached_values(parameter):
                async with contextlib.aclosing(self.iterate(index + 1, {**binding, parameter.name: value})) as deeper:
                    async for combination in deeper:
                        yield combination
            return
        values = self._values(parameter, {k: binding[k] for k in parameter.depends_on})
        async with contextlib.aclosing(values):
            async for value in values:
                async with contextlib.aclosing(self.iterate(index + 1, {**binding, parameter.name: value})) as deeper:
                    async for combination in deeper:
                        yield combination


def _annotate(items: list[Any], binding: dict[str, Any]) -> None:
    fields = {f"__{name}": value for name, value in binding.items()}
    for item in items:
        if isinstance(item, dict):
            item.update(fields)


_DONE = object()


async def _fan_out(
    client: SourceClient, plan: FetchPlan, counters: FetchCounters, budget: _Budget
) -> AsyncIterator[list[Any]]:
    """Fetch the child endpoint for every combination of parameter values, at most
    ``maxConcurrentRequests`` (and :data:`MAX_FAN_OUT`) children at once, and yield the child pages
    as they arrive.

    Bounded queues keep memory small: parent discovery waits while all workers are busy, and
    workers wait while the consumer is behind. Parents and children share ``budget`` for pages
    fetched ahead, and the client's limits for requests: fanning out multiplies neither.
    """
    workers = min(client.spec.max_concurrent_requests, MAX_FAN_OUT)
    jobs: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue(maxsize=workers)
    results: asyncio.Queue[Any] = asyncio.Queue(maxsize=workers)

    async def produce() -> None:
        try:
            async with contextlib.aclosing(_Combinations(client, plan, counters, budget).iterate()) as bindings:
                async for binding in bindings:
                    await jobs.put(binding)
            for _ in range(workers):
                await jobs.put(None)
        except Exception as e:
            await results.put(e)

    async def work() -> None:
        try:
            while (binding := await jobs.get()) is not None:
                counters.parents += 1
                pages = _endpoint_pages(client, plan, plan.request, binding, counters, budget, main=True)
                async with contextlib.aclosing(pages):
                    async for items in pages:
                        if type(items) is list:  # mapped in a worker: annotated there
                            _annotate(items, binding)
                        await results.put(items)
            await results.put(_DONE)
        except Exception as e:
            await results.put(e)

    tasks = [asyncio.create_task(produce(), name="httpsync-parents")]
    tasks += [asyncio.create_task(work(), name=f"httpsync-child-{i}") for i in range(workers)]
    try:
        done = 0
        while done < workers:
            result = await results.get()
            if result is _DONE:
                done += 1
            elif isinstance(result, BaseException):
                raise result
            else:
                yield result
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def iter_pages(
    client: SourceClient,
    mapping: HttpEndpointMappingSpec,
    pagination: PaginationSpec,
    counters: FetchCounters,
) -> AsyncIterator[list[Any]]:
    """Yield the items of each page of ``mapping``'s endpoint as it arrives.

    ``pagination`` is the effective spec (the mapping's, else the source's); nested endpoints'
    parents use it too. Raises an :class:`~httpsync.errors.EngineError` on any failure:
    pages already yielded are then only part of the data. Close it (``contextlib.aclosing``) when
    stopping early: that cancels the requests made ahead.
    """
    plan = FetchPlan.compile(mapping, pagination, for_workers=client.pool is not None)
    client.url_for(mapping.kind)  # a kind on another host fails before any request
    budget = _Budget(pages_ahead(client.spec.max_concurrent_requests, pagination.page_size) - 1)
    if not plan.parameters:
        pages = _endpoint_pages(client, plan, plan.request, {}, counters, budget, main=True)
    else:
        pages = _fan_out(client, plan, counters, budget)
    async with contextlib.aclosing(pages):
        async for items in pages:
            yield items
