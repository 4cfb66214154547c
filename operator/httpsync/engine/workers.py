"""Worker processes that decode, extract, paginate-read and map pages, so that jq never runs in the
process every source shares.

A mapping is other people's code (jq written by a tenant) run on other people's data (an API's
response): ``until(false; .)`` never ends, ``[range(1e9)]`` eats the memory, a 64 MiB body takes
a while to decode. Each such page runs in a worker process of a :class:`WorkerPool`:

- **bounded in time**: a page that takes longer than its deadline (``spec.mappingTimeoutSeconds``
  of the source) kills its worker and fails the endpoint with reason ``MappingTimeout``; the next
  page gets a new worker;
- **bounded in memory**: workers run under ``RLIMIT_AS`` (``--worker-memory``, default 1 GiB); one
  that runs out dies (or reports it) and the endpoint fails with ``MappingMemoryLimit``;
- **without secrets**: a worker starts with an empty environment (the operator's holds the sink
  credentials), on top of the jq prelude that hides ``$ENV`` anyway;
- **in parallel**: one thread per worker talks to it over pipes, so the event loop only hands over
  bytes and gets entities back; pages fetched ahead are processed concurrently, one per worker.

The size of the pool (``--workers``, ``HTTPSYNC_WORKERS``) defaults to the number of CPUs.

The protocol: frames of an 8-byte length and a pickle, parent -> worker a :class:`PageTask`, worker
-> parent a :class:`PageOutcome` (or ``("ready", pid)`` once, after the imports).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import functools
import os
import pickle
import select
import struct
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from httpsync.errors import EngineError, ResponseTooDeepError

WORKERS_ENV = "HTTPSYNC_WORKERS"
WORKER_MEMORY_ENV = "HTTPSYNC_WORKER_MEMORY_MB"
DEFAULT_MEMORY_MB = 1024
STARTUP_TIMEOUT = 120.0  # a worker's imports, on a loaded machine
_HEADER = struct.Struct("<Q")
_MIB = 1024 * 1024
# Constructs that can loop for long; fields using them are named when a page times out.
_SLOW_HINTS = ("until", "while", "repeat", "range", "recurse", "limit", "def ", "..", "input", "getpath", "walk")


class MappingTimeoutError(EngineError):
    """A page took longer than its deadline: a jq expression that does not end (or a huge page)."""

    reason = "MappingTimeout"
    stalled = True


class MappingMemoryError(EngineError):
    """A worker ran out of memory (or died) on a page."""

    reason = "MappingMemoryLimit"
    stalled = True


# --------------------------------------------------------------------------- what goes through the pipe


@dataclass(frozen=True, slots=True)
class PageTask:
    """One page to process. ``plan`` is the JSON of the mapping and pagination specs (a worker compiles
    each plan once); ``role`` is ``"main"`` (map the items) or the name of a path parameter (read the
    parent items' values)."""

    plan: str
    role: str
    body: bytes
    where: str  # GET <url>, for messages
    binding: dict[str, Any] = field(default_factory=dict)  # path parameter values (``__<name>`` fields)
    param_where: str = ""  # the parameter endpoint, for messages


@dataclass(slots=True)
class PageOutcome:
    """What a worker made of a page: either ``error`` / ``json_error``, or the body's view for the
    paginator, the item count and the mapped page (main) or the parameter values (parents)."""

    view: Any = None
    items: int = 0
    page: Any = None  # mapping.PageResult (its entities travel as ``entities_json`` when they can)
    entities_json: bytes | None = None
    values: list[Any] | None = None
    error: EngineError | None = None
    json_error: str | None = None


# --------------------------------------------------------------------------- the worker side


@functools.lru_cache(maxsize=64)
def _program(plan: str) -> Any:
    import json

    from httpsync.api.models import HttpEndpointMappingSpec, PaginationSpec
    from httpsync.engine.fetch import FetchPlan
    from httpsync.engine.mapping import Mapper

    doc = json.loads(plan)
    mapping = HttpEndpointMappingSpec.model_validate(doc["mapping"])
    pagination = PaginationSpec.model_validate(doc["pagination"])
    fetch = FetchPlan.compile(mapping, pagination)
    return fetch, Mapper.from_spec(mapping)


def process(task: PageTask) -> PageOutcome:
    """Decode, extract, read the pagination paths and map (or read parameter values) of one page."""
    from httpsync.engine import jsoncodec
    from httpsync.engine.fetch import _annotate, _parameter_value
    from httpsync.engine.pagination import BodyView

    try:
        fetch, mapper = _program(task.plan)
        try:
            body = jsoncodec.loads(task.body)
        except jsoncodec.TooDeepError as e:
            return PageOutcome(error=ResponseTooDeepError(f"{task.where} returned JSON httpsync does not read: {e}"))
        except ValueError as e:
            return PageOutcome(json_error=str(e))
        if task.role == "main":
            items = fetch.request.data_path.extract(body, task.where)
            view = BodyView.of(fetch.pagination, body)
            if task.binding:
                _annotate(items, task.binding)
            return PageOutcome(view=view, items=len(items), page=mapper.map_page(items))
        parameter = next(p for p in fetch.parameters if p.name == task.role)
        items = parameter.request.data_path.extract(body, task.where)
        view = BodyView.of(fetch.pagination, body)
        values = [_parameter_value(parameter, item, task.param_where) for item in items]
        return PageOutcome(view=view, items=len(items), values=values)
    except EngineError as e:
        return PageOutcome(error=EngineError(e.message, reason=e.reason, stalled=e.stalled))
    except MemoryError:
        raise
    except Exception as e:  # never a traceback across the pipe
        return PageOutcome(error=EngineError(f"mapping the page of {task.where} failed: {type(e).__name__}: {e}"))


def _pack_entities(outcome: PageOutcome) -> None:
    """Entities as JSON (orjson reads it back several times faster than pickle), when JSON gives them
    back exactly: not for integers beyond 64 bits or non-finite floats, which stay pickled."""
    import orjson

    from httpsync.engine.jsoncodec import _has_non_finite

    page = outcome.page
    if page is None or not page.entities:
        return
    try:
        data = orjson.dumps(page.entities)
    except orjson.JSONEncodeError:
        return
    if b"null" in data and any(_has_non_finite(e) for e in page.entities):
        return
    outcome.entities_json = data
    page.entities = []


def _unpack_entities(outcome: PageOutcome) -> PageOutcome:
    if outcome.entities_json is not None:
        import orjson

        outcome.page.entities = orjson.loads(outcome.entities_json)
        outcome.entities_json = None
    return outcome


def _read_exactly(fd: int, n: int) -> bytes:
    parts: list[bytes] = []
    while n:
        chunk = os.read(fd, min(n, 1 << 20))
        if not chunk:
            raise EOFError
        parts.append(chunk)
        n -= len(chunk)
    return b"".join(parts)


def _write_frame(fd: int, obj: Any) -> None:
    data = pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
    view = memoryview(_HEADER.pack(len(data)) + data)
    while view:
        view = view[os.write(fd, view) :]


def worker_main() -> None:
    """The loop of one worker process (started by :class:`_Worker`; argv[1]: the memory limit in MiB)."""
    import resource

    memory_mb = int(sys.argv[1]) if len(sys.argv) > 1 else DEFAULT_MEMORY_MB
    if memory_mb > 0:
        limit = memory_mb * _MIB
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    os.environ.clear()  # whatever the parent passed: jq's env/$ENV read this process's environment
    fd_in, fd_out = sys.stdin.fileno(), sys.stdout.fileno()
    # Nothing may write to the frames' pipe but _write_frame.
    sys.stdout = open(os.devnull, "w")
    import httpsync.engine.fetch
    import httpsync.engine.mapping  # noqa: F401

    _write_frame(fd_out, ("ready", os.getpid()))
    while True:
        try:
            (size,) = _HEADER.unpack(_read_exactly(fd_in, _HEADER.size))
            task = pickle.loads(_read_exactly(fd_in, size))
        except EOFError:
            return
        try:
            outcome: Any = process(task)
        except MemoryError:
            outcome = PageOutcome(error=MappingMemoryError(f"out of memory mapping the page of {task.where}"))
        del task
        try:
            _pack_entities(outcome)
            _write_frame(fd_out, outcome)
        except MemoryError:
            _write_frame(fd_out, PageOutcome(error=MappingMemoryError("out of memory sending the mapped page")))


# --------------------------------------------------------------------------- the parent side


class _Died(Exception):
    pass


class _TimedOut(Exception):
    pass


class _Worker:
    """One worker process and its pipes; used by one thread at a time."""

    def __init__(self, memory_mb: int) -> None:
        env = {"PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
        self.proc = subprocess.Popen(
            [sys.executable, "-c", "from httpsync.engine.workers import worker_main; worker_main()", str(memory_mb)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            env=env,
            close_fds=True,
        )
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.fd_in = self.proc.stdin.fileno()
        self.fd_out = self.proc.stdout.fileno()
        self.ready = False

    def _recv(self, deadline: float) -> Any:
        header = self._read(_HEADER.size, deadline)
        (size,) = _HEADER.unpack(header)
        return pickle.loads(self._read(size, deadline))

    def _read(self, n: int, deadline: float) -> bytes:
        parts: list[bytes] = []
        while n:
            left = deadline - time.monotonic()
            if left <= 0:
                raise _TimedOut
            readable, _, _ = select.select([self.fd_out], [], [], left)
            if not readable:
                raise _TimedOut
            chunk = os.read(self.fd_out, min(n, 1 << 20))
            if not chunk:
                raise _Died
            parts.append(chunk)
            n -= len(chunk)
        return b"".join(parts)

    def wait_ready(self) -> None:
        if self.ready:
            return
        try:
            hello = self._recv(time.monotonic() + STARTUP_TIMEOUT)
        except _TimedOut:
            raise _Died from None
        if not (isinstance(hello, tuple) and hello[0] == "ready"):
            raise _Died
        self.ready = True

    def call(self, task: PageTask, timeout: float) -> PageOutcome:
        self.wait_ready()
        data = pickle.dumps(task, protocol=pickle.HIGHEST_PROTOCOL)
        try:
            view = memoryview(_HEADER.pack(len(data)) + data)
            del data
            while view:
                view = view[os.write(self.fd_in, view) :]
        except (BrokenPipeError, ConnectionResetError):
            raise _Died from None
        result = self._recv(time.monotonic() + timeout)
        if not isinstance(result, PageOutcome):
            raise _Died
        return _unpack_entities(result)

    def kill(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            self.proc.kill()
        with contextlib.suppress(Exception):
            self.proc.wait(timeout=10)
        for stream in (self.proc.stdin, self.proc.stdout):
            with contextlib.suppress(Exception):
                stream.close()  # type: ignore[union-attr]

    def exit_description(self) -> str:
        code = self.proc.poll()
        if code is None:
            return "was stopped"
        if code < 0:
            import signal

            with contextlib.suppress(ValueError):
                return f"was killed by {signal.Signals(-code).name}"
            return f"was killed by signal {-code}"
        return f"exited with code {code}"


class WorkerPool:
    """``size`` worker processes, each driven by its own thread (so any event loop can use the pool).
    Workers start on first use and are replaced when they time out or die."""

    def __init__(self, size: int | None = None, *, memory_mb: int = DEFAULT_MEMORY_MB) -> None:
        self.size = max(1, size or os.cpu_count() or 1)
        self.memory_mb = memory_mb
        self._threads = concurrent.futures.ThreadPoolExecutor(self.size, thread_name_prefix="httpsync-worker")
        self._local = threading.local()
        self._all: set[_Worker] = set()
        self._lock = threading.Lock()
        self.replaced = 0  # workers killed or found dead (for tests and metrics)
        # At interpreter exit the executor joins its threads before atexit handlers run: kill the
        # workers first (this runs before the executor's own hook), so no thread waits for a deadline.
        threading._register_atexit(self.close)  # type: ignore[attr-defined]

    def _worker(self) -> _Worker:
        worker: _Worker | None = getattr(self._local, "worker", None)
        if worker is None or worker.proc.poll() is not None:
            if worker is not None:
                self._drop(worker)
            worker = _Worker(self.memory_mb)
            with self._lock:
                self._all.add(worker)
            self._local.worker = worker
        return worker

    def _drop(self, worker: _Worker) -> None:
        worker.kill()
        with self._lock:
            self._all.discard(worker)
            self.replaced += 1
        if getattr(self._local, "worker", None) is worker:
            self._local.worker = None

    def start(self) -> None:
        """Start every worker now, in the background (a worker's imports take about a second)."""
        for _ in range(self.size):
            self._threads.submit(self._start_one)

    def _start_one(self) -> None:
        with contextlib.suppress(_Died, OSError):
            self._worker().wait_ready()

    def _call(self, task: PageTask, timeout: float) -> PageOutcome:
        worker = self._worker()
        try:
            outcome = worker.call(task, timeout)
        except _TimedOut:
            self._drop(worker)
            raise MappingTimeoutError("") from None
        except _Died:
            with contextlib.suppress(subprocess.TimeoutExpired):
                worker.proc.wait(timeout=5)
            how = worker.exit_description()
            self._drop(worker)
            raise MappingMemoryError(f"the worker {how}") from None
        if isinstance(outcome.error, MappingMemoryError):
            raise MappingMemoryError("MemoryError in the worker")
        return outcome

    async def run(self, task: PageTask, timeout: float) -> PageOutcome:
        """Process ``task`` in a worker within ``timeout`` seconds (from when a worker takes it).
        Raises :class:`MappingTimeoutError` / :class:`MappingMemoryError` (messages left to the caller)."""
        loop = asyncio.get_running_loop()
        future = loop.run_in_executor(self._threads, self._call, task, timeout)
        # A cancelled caller leaves the thread to finish with its worker (never a half-read pipe).
        return await asyncio.shield(future)

    def close(self) -> None:
        self._threads.shutdown(wait=False, cancel_futures=True)
        with self._lock:
            workers, self._all = list(self._all), set()
        for worker in workers:
            worker.kill()


_shared: WorkerPool | None = None
_shared_lock = threading.Lock()


def configure(size: int | None = None, memory_mb: int | None = None) -> None:
    """Set the shared pool's size and memory limit (CLI ``--workers`` / ``--worker-memory``) before use."""
    if size is not None:
        os.environ[WORKERS_ENV] = str(size)
    if memory_mb is not None:
        os.environ[WORKER_MEMORY_ENV] = str(memory_mb)


def shared_pool() -> WorkerPool:
    """The process's pool: ``HTTPSYNC_WORKERS`` workers (default: the CPUs), each under
    ``HTTPSYNC_WORKER_MEMORY_MB`` MiB (default 1024; 0: no limit)."""
    global _shared
    with _shared_lock:
        if _shared is None:
            size = int(os.environ.get(WORKERS_ENV) or 0) or None
            memory = int(os.environ.get(WORKER_MEMORY_ENV) or DEFAULT_MEMORY_MB)
            _shared = WorkerPool(size, memory_mb=memory)
            _shared.start()
        return _shared


def slow_field_hint(fields: list[tuple[str, str]]) -> str:
    """``; likely mappings.title (until)`` for the fields whose jq can loop for long."""
    suspects = []
    for label, expr in fields:
        found = [h.strip() for h in _SLOW_HINTS if h in expr]
        if found:
            suspects.append(f"{label} ({', '.join(found)})")
    return f"; likely {', '.join(suspects)}" if suspects else ""
