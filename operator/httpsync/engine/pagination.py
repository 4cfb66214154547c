"""Walking the pages of an endpoint: one small class per pagination style behind one interface.

A :class:`PaginationPlan` compiles the jq of a :class:`PaginationSpec` once; for each run over an
endpoint it starts a :class:`Paginator`::

    paginator = plan.start(url, params)
    request = paginator.first_request()
    while request:
        body, response = fetch(*request)
        request = paginator.next_request(response, body, items)

When to stop, in this order of trust:

1. an explicit signal: ``hasMorePath`` false or ``lastPagePath`` true (stop), or their opposite
   (continue); for cursor, nextLink and linkHeader the presence of a cursor or next link;
2. ``totalPath``: the items received so far reached the total (an empty page before it ends the
   pages too, but :attr:`Paginator.shortfall` says the data is incomplete: the fetch then fails with
   ``IncompleteFetch``, so nothing is deleted);
3. an empty page;
4. a short page (fewer items than ``pageSize``), for offset and page, when a size is sent.

Offsets advance by the number of items received, so a server capping the page size below
``pageSize`` loses nothing. Every style fails with :class:`PaginationError` after ``maxPages``
pages, after :data:`MAX_EMPTY_PAGES` empty pages in a row that still announce more, on a
repeated cursor or next link, and on a page identical to the previous one. The first two end
the run after the page that reached them: that page is yielded and counted like the others, then
:attr:`Paginator.stopped` is raised (so "stopped after 3 pages" is true of the counts).

For fetching ahead, :meth:`Paginator.upcoming` guesses the requests after the next one: every
remaining page when a total (or, for page pagination, the number of the last page) is known,
else ``prefetch`` pages. They are guesses only: the fetcher uses a response only when
:meth:`Paginator.next_request`, fed the pages in order, asks for exactly that request, so what
is yielded, counted and checked is what sequential fetching gives.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urljoin

import httpx

from httpsync.api.models import PaginationSpec, PaginationType
from httpsync.engine import jqfast, jsoncodec
from httpsync.engine.jqutil import compile_jq, first_exact, jq_error_line, json_type, normalize_path
from httpsync.engine.url import merge_query, same_origin
from httpsync.errors import ConfigError, PaginationError, ResponseTooDeepError
from httpsync.http.redact import redact

PageRequest = tuple[str, dict[str, str]]
MAX_EMPTY_PAGES = 3  # empty pages in a row that still announce more: the API loops


def a_json_type(value: Any) -> str:
    """``an object``, ``a string``, ...: jq's type name of ``value`` with its article."""
    name = json_type(value)
    return f"an {name}" if name[0] in "aeiou" else f"a {name}"


DEFAULT_NEXT_LINK_PATHS = ('."@odata.nextLink"', ".next")

# --------------------------------------------------------------------------- Link header (RFC 8288)

_LINK_PARAM = re.compile(r'\s*;\s*([^\s=;,]+)\s*(?:=\s*("(?:[^"\\]|\\.)*"|[^;,]*))?')
_UNESCAPE = re.compile(r"\\(.)")


def parse_link_header(values: Iterable[str]) -> list[tuple[str, dict[str, str]]]:
    """Parse ``Link`` header values into (target, params) pairs, params lowercased by name.

    Handles several links per header, several headers, quoted parameter values (with commas and
    semicolons inside) and targets containing commas.
    """
    links: list[tuple[str, dict[str, str]]] = []
    for value in values:
        i, n = 0, len(value)
        while i < n:
            while i < n and value[i] in " \t,":
                i += 1
            if i >= n:
                break
            if value[i] != "<":  # malformed link-value: skip to the next one
                j = value.find(",", i)
                if j < 0:
                    break
                i = j + 1
                continue
            j = value.find(">", i)
            if j < 0:
                break
            target = value[i + 1 : j].strip()
            i = j + 1
            params: dict[str, str] = {}
            while (m := _LINK_PARAM.match(value, i)) is not None:
                name = m.group(1).lower()
                raw = (m.group(2) or "").strip()
                if raw.startswith('"') and raw.endswith('"') and len(raw) >= 2:
                    raw = _UNESCAPE.sub(r"\1", raw[1:-1])
                params.setdefault(name, raw)
                i = m.end()
            links.append((target, params))
    return links


def find_link(links: Iterable[tuple[str, dict[str, str]]], rel: str) -> str | None:
    """The target of the first link whose ``rel`` (space-separated relation types) includes ``rel``."""
    wanted = rel.lower()
    for target, params in links:
        if wanted in params.get("rel", "").lower().split():
            return target
    return None


# --------------------------------------------------------------------------- compiled spec


@dataclass(frozen=True, slots=True)
class _Path:
    """A compiled jq path of the pagination spec, with its field name for messages."""

    field: str
    expr: str
    program: Any
    steps: tuple[str | int, ...] | None = None  # a plain path, walked in Python (jqfast)


    @property
    def key(self) -> tuple[str, str]:
        return (self.field, self.expr)


@dataclass(frozen=True, slots=True)
class PathFailure:
    """jq failed on a pagination path (its message, redacted); ``too_deep``: the body is nested too
    deeply for it."""

    detail: str
    too_deep: bool = False


def path_value(path: _Path, body: Any) -> Any:
    """The first output of a pagination path over ``body`` (None without output), or a PathFailure.
    Integers beyond 2^53 keep every digit (jq's own JSON text is read, not its doubles)."""
    if path.steps is not None and jqfast.plain_json(body):
        # A plain path over a body jq would give back unchanged: the same value without jq.
        with contextlib.suppress(jqfast.Fallback):
            return jqfast.normalize(jqfast.walk(body, path.steps))
    try:
        return first_exact(path.program, json.dumps(body))
    except StopIteration:
        return None
    except RecursionError:
        if path.steps is not None:
            with contextlib.suppress(jqfast.Fallback, RecursionError):
                return jqfast.normalize(jqfast.walk(body, path.steps))
        return PathFailure("it is nested too deeply", too_deep=True)
    except ValueError as e:
        if path.steps is not None and jsoncodec.has_lone_surrogate(body):
            # jq refuses the whole body; the path itself may be fine (the bad string is in an item).
            with contextlib.suppress(jqfast.Fallback):
                return jqfast.normalize(jqfast.walk(body, path.steps))
        return PathFailure(redact(jq_error_line(e)))


@dataclass(frozen=True, slots=True)
class BodyView:
    """What the paginators need of a body, computed where the body was decoded (a worker process):
    every pagination path's value, the body's JSON type and whether it is an object."""

    values: dict[tuple[str, str], Any]
    json_type: str
    is_object: bool

    @classmethod
    def of(cls, plan: PaginationPlan, body: Any) -> BodyView:
        return cls({p.key: path_value(p, body) for p in plan.paths()}, a_json_type(body), isinstance(body, dict))


class Count:
    """Stands for a page's items where only their number matters (``len``, truth)."""

    __slots__ = ("n",)

    def __init__(self, n: int) -> None:
        self.n = n

    def __len__(self) -> int:
        return self.n


def _compile_path(expr: str | None, field: str) -> _Path | None:
    if not expr:
        return None
    normalized = normalize_path(expr)
    return _Path(field, expr, compile_jq(normalized, field), jqfast.plain_path(normalized))


@dataclass(frozen=True, slots=True)
class PaginationPlan:
    """A :class:`PaginationSpec` with its jq compiled. Compile it before any request, so invalid jq
    fails the sync at once, naming the field."""

    spec: PaginationSpec
    cursor: _Path | None
    has_more: _Path | None
    last_page: _Path | None
    total: _Path | None
    next_link: tuple[_Path, ...]

    @classmethod
    def compile(cls, spec: PaginationSpec) -> PaginationPlan:
        if spec.type == PaginationType.cursor and not spec.cursor_path:
            raise ConfigError("pagination.type cursor needs pagination.cursorPath")
        link_paths = (spec.next_link_path,) if spec.next_link_path else DEFAULT_NEXT_LINK_PATHS
        next_link = [_compile_path(p, "pagination.nextLinkPath") for p in link_paths]
        return cls(
            spec=spec,
            cursor=_compile_path(spec.cursor_path, "pagination.cursorPath"),
            has_more=_compile_path(spec.has_more_path, "pagination.hasMorePath"),
            last_page=_compile_path(spec.last_page_path, "pagination.lastPagePath"),
            total=_compile_path(spec.total_path, "pagination.totalPath"),
            next_link=tuple(p for p in next_link if p is not None),
        )

    def paths(self) -> list[_Path]:
        """Every jq path of the plan."""
        found = [self.cursor, self.has_more, self.last_page, self.total, *self.next_link]
        return [p for p in found if p is not None]

    def start(
        self, url: str, params: Mapping[str, str] | None = None, *, display: Callable[[str], str] = str
    ) -> Paginator:
        """A paginator for one run over ``url`` (with the endpoint's own query ``params``).
        ``display`` makes URLs fit for messages (strips credentials)."""
        cls = _STYLES[self.spec.type]
        return cls(self, url, dict(params or {}), display)


# --------------------------------------------------------------------------- paginators


class Paginator:
    """One run over the pages of one endpoint. Subclasses decide the next request."""

    style = "none"

    def __init__(self, plan: PaginationPlan, url: str, params: dict[str, str], display: Callable[[str], str]):
        self.plan = plan
        self.spec = plan.spec
        self.url = url
        self.params = params
        self.display = display
        self.pages = 0  # pages received
        self.items = 0  # items received
        self.last_items = 0  # items of the last page received
        # (received, announced) when the pages ended before the total the API announced (totalPath).
        self.shortfall: tuple[int, float] | None = None
        self._last_hash: bytes | None = None
        self._current = url  # URL of the page being processed (for messages)
        self.empty_run = 0  # empty pages in a row
        # Why the run ends after the last page received although the API announced more (maxPages,
        # empty pages): the fetcher raises it once that page is yielded.
        self.stopped: PaginationError | None = None

    # -- interface

    def first_request(self) -> PageRequest:
        request = (self.url, {**self.params, **self._first_params()})
        self._current = merge_query(*request)
        return request

    def next_request(self, response: httpx.Response, body: Any, items: list[Any]) -> PageRequest | None:
        """The request of the next page, or None after the last one. Raises PaginationError on a loop.
        When ``maxPages`` or :data:`MAX_EMPTY_PAGES` empty pages in a row are reached with more
        pages announced, returns None and sets :attr:`stopped`: this page counts, the run fails."""
        self.pages += 1
        self.items += len(items)
        self.last_items = len(items)
        self.empty_run = 0 if items else self.empty_run + 1
        self._check_identical(response)
        nxt = self._next(response, body, items)
        if nxt is None:
            return None
        if self.empty_run >= MAX_EMPTY_PAGES:
            self.stopped = PaginationError(
                f"stopped after {self.pages} pages: the last {self.empty_run} pages of "
                f"{self.display(self._current)} were empty but still announced more ({self.style} "
                "pagination); check the pagination settings (hasMorePath, cursorPath...)"
            )
            return None
        if self.pages >= self.spec.max_pages:
            self.stopped = PaginationError(
                f"stopped after {self.pages} pages (maxPages): {self.display(self._current)} still "
                f"announces more ({self.style} pagination); raise pagination.maxPages if the endpoint "
                "really has more pages, or check the pagination settings"
            )
            return None
        self._current = merge_query(*nxt)
        return nxt

    def upcoming(self, limit: int) -> list[PageRequest]:
        """Up to ``limit`` requests expected after the one the last :meth:`next_request` returned, in
        order, for fetching ahead: guesses from what is known now (none for cursors and links, whose
        next request needs the previous response). Never more than ``maxPages`` allows."""
        return []

    # -- for subclasses

    def _first_params(self) -> dict[str, str]:
        return {}

    def _next(self, response: httpx.Response, body: Any, items: list[Any]) -> PageRequest | None:
        return None

    def _size_params(self, default_param: str | None) -> dict[str, str]:
        size_param = self.spec.size_param if self.spec.size_param is not None else default_param
        return {size_param: str(self.spec.page_size)} if size_param else {}

    def _sends_size(self, default_param: str | None) -> bool:
        return bool(self.spec.size_param if self.spec.size_param is not None else default_param)

    def _check_identical(self, response: httpx.Response) -> None:
        digest = hashlib.blake2b(response.content, digest_size=16).digest()
        if digest == self._last_hash:
            raise PaginationError(
                f"page {self.pages} of {self.display(self._current)} is identical to page {self.pages - 1} "
                f"({self.style} pagination): the API ignores the pagination parameters or loops; check "
                "pagination.type and paginationParam"
            )
        self._last_hash = digest

    def _value(self, path: _Path, body: Any) -> Any:
        if type(body) is BodyView:
            value = body.values[path.key]
            json_type = body.json_type
        else:
            value = path_value(path, body)
            json_type = a_json_type(body)
        if type(value) is PathFailure and value.too_deep:
            raise ResponseTooDeepError(
                f"{path.field} {path.expr!r} cannot run on the response of {self.display(self._current)}: "
                "it is nested too deeply"
            )
        if type(value) is PathFailure:
            raise PaginationError(
                f"{path.field} {path.expr!r} failed on the response of {self.display(self._current)} "
                f"({json_type}): {value.detail}"
            )
        return value

    def _flag(self, path: _Path | None, body: Any) -> bool | None:
        if path is None:
            return None
        return self._flag_value(path, self._value(path, body))

    def _flag_value(self, path: _Path, value: Any) -> bool | None:
        if value is None or isinstance(value, bool):
            return value
        if isinstance(value, (int, float)):
            return bool(value)
        if isinstance(value, str) and value.strip().lower() in ("true", "false", "1", "0", "yes", "no"):
            return value.strip().lower() in ("true", "1", "yes")
        raise PaginationError(
            f"{path.field} {path.expr!r} gave {a_json_type(value)}, not a boolean, in the response of "
            f"{self.display(self._current)}"
        )

    def _explicit(self, body: Any) -> bool | None:
        """True (more pages), False (last page) or None (no explicit signal)."""
        has_more = self._flag(self.plan.has_more, body)
        if has_more is not None:
            return has_more
        last_page = self._last_page(body)
        if last_page is not None:
            return not last_page
        return None

    def _last_page(self, body: Any) -> bool | None:
        """Whether ``lastPagePath`` says this is the last page (None: it says nothing)."""
        return self._flag(self.plan.last_page, body)

    def _total(self, body: Any) -> float | None:
        if self.plan.total is None:
            return None
        value = self._value(self.plan.total, body)
        if isinstance(value, bool) or value is None:
            return None
        try:
            return float(value)
        except (TypeError, ValueError):
            raise PaginationError(
                f"pagination.totalPath {self.plan.total.expr!r} gave {a_json_type(value)}, not a number, "
                f"in the response of {self.display(self._current)}"
            ) from None


class NoPaginator(Paginator):
    style = "none"


class _CountedPaginator(Paginator):
    """Offset and page styles: the next request is computable, so pages can be fetched ahead."""

    size_default = ""

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.known_total: float | None = None  # the last total read (totalPath)
        self.last_page_number: int | None = None  # the last page's number (page: lastPagePath)

    def _counted_more(self, body: Any, items: list[Any]) -> bool:
        """Whether more pages follow (explicit, total, empty, short)."""
        explicit = self._explicit(body)
        if explicit is not None:
            if explicit and self.plan.total is not None:
                with contextlib.suppress(PaginationError):  # for fetching ahead only: not an error here
                    self.known_total = self._total(body)
            return explicit
        total = self.known_total = self._total(body)
        if total is not None:
            more = bool(items) and self.items < total
            if not more and self.items < total:
                self.shortfall = (self.items, total)  # an empty page before the total: the data is incomplete
            return more
        if not items:
            return False
        return not (self._sends_size(self.size_default) and len(items) < self.spec.page_size)

    def upcoming(self, limit: int) -> list[PageRequest]:
        count = self._pages_after_next()
        if count is None:
            count = self.spec.prefetch or 0  # nothing says how many: speculate, if asked to
        count = min(count, limit, self.spec.max_pages - self.pages - 1)
        return [self._request(k) for k in range(1, count + 1)]

    def _stride(self) -> int:
        """Items per page, as the server answers (it may cap pageSize)."""
        return self.last_items or self.spec.page_size

    def _pages_after_next(self) -> int | None:
        if self.known_total is None:
            return None
        left = self.known_total - self.items - self._stride()  # after the next page
        if not math.isfinite(left):
            return None
        return max(0, math.ceil(left / self._stride()))

    def _request(self, ahead: int) -> PageRequest:
        """The request ``ahead`` pages after the next one (0: the next one), if pages are full."""
        raise NotImplementedError


class OffsetPaginator(_CountedPaginator):
    style = "offset"
    size_default = "limit"

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.param = self.spec.pagination_param or "offset"
        self.offset = 0

    def _first_params(self) -> dict[str, str]:
        return {self.param: "0", **self._size_params("limit")}

    def _next(self, response: httpx.Response, body: Any, items: list[Any]) -> PageRequest | None:
        self.offset += len(items)  # received, not pageSize: a server-side cap loses nothing
        if not self._counted_more(body, items):
            return None
        return self._request(0)

    def _request(self, ahead: int) -> PageRequest:
        offset = self.offset + ahead * self._stride()
        return self.url, {**self.params, self.param: str(offset), **self._size_params("limit")}


class PagePaginator(_CountedPaginator):
    style = "page"
    size_default = "size"

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.param = self.spec.pagination_param or "page"
        self.page = self.spec.start_page if self.spec.start_page is not None else 1

    def _first_params(self) -> dict[str, str]:
        return {self.param: str(self.page), **self._size_params("size")}

    def _next(self, response: httpx.Response, body: Any, items: list[Any]) -> PageRequest | None:
        if not self._counted_more(body, items):
            return None
        self.page += 1
        return self._request(0)

    def _request(self, ahead: int) -> PageRequest:
        return self.url, {**self.params, self.param: str(self.page + ahead), **self._size_params("size")}

    def _last_page(self, body: Any) -> bool | None:
        """``lastPagePath`` may give the last page's number (any number but 0 and 1, which keep their
        meaning of false and true)."""
        path = self.plan.last_page
        if path is None:
            return None
        value = self._value(path, body)
        number = _page_number(value)
        if number is None:
            return self._flag_value(path, value)
        self.last_page_number = number
        return self.page >= number

    def _pages_after_next(self) -> int | None:
        if self.last_page_number is not None:
            return max(0, self.last_page_number - self.page)
        return super()._pages_after_next()


def _page_number(value: Any) -> int | None:
    """``value`` as a page number: a whole number other than 0 and 1; else None."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    if isinstance(value, float) and not value.is_integer():
        return None
    number = int(value)
    return None if number in (0, 1) else number


class CursorPaginator(Paginator):
    style = "cursor"

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.param = self.spec.pagination_param or "cursor"
        self._seen: dict[str, int] = {}  # cursor -> page that returned it

    def _first_params(self) -> dict[str, str]:
        return self._size_params("limit")

    def _next(self, response: httpx.Response, body: Any, items: list[Any]) -> PageRequest | None:
        assert self.plan.cursor is not None
        cursor = self._value(self.plan.cursor, body)
        if cursor is None or cursor == "" or cursor is False:
            return None
        if isinstance(cursor, (dict, list)):
            raise PaginationError(
                f"pagination.cursorPath {self.plan.cursor.expr!r} gave {a_json_type(cursor)}, not a string "
                f"or number, in the response of {self.display(self._current)}"
            )
        if self._explicit(body) is False:
            return None
        text = cursor if isinstance(cursor, str) else _scalar_text(cursor)
        if text in self._seen:
            shown = redact(text if len(text) <= 60 else text[:60] + "...")
            raise PaginationError(
                f"page {self.pages} of {self.display(self.url)} returned the cursor {shown!r} again "
                f"(page {self._seen[text]} already returned it): the API loops; check "
                "pagination.cursorPath and paginationParam"
            )
        self._seen[text] = self.pages
        return self.url, {**self.params, self.param: text, **self._size_params("limit")}


class _LinkPaginator(Paginator):
    """Follows absolute or relative links. The link's own query parameters are used as they are:
    the first request's parameters are not added again."""

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self._seen: dict[str, int] = {}

    def first_request(self) -> PageRequest:
        request = super().first_request()
        self._seen[self._current] = 0
        return request

    def _first_params(self) -> dict[str, str]:
        # Only an explicit sizeParam is sent (the link carries the size afterwards).
        return self._size_params(None)

    def _link(self, response: httpx.Response, body: Any) -> str | None:
        raise NotImplementedError

    def _next(self, response: httpx.Response, body: Any, items: list[Any]) -> PageRequest | None:
        link = self._link(response, body)
        if not link or self._explicit(body) is False:
            return None
        target = urljoin(self._current, link.strip())
        if not same_origin(target, self.url):
            raise PaginationError(
                f"the next link of {self.display(self._current)} points to another host "
                f"({self.display(target)}): httpsync does not send the source's credentials elsewhere"
            )
        if target in self._seen:
            page = self._seen[target]
            raise PaginationError(
                f"page {self.pages} of {self.display(self.url)} links to {self.display(target)} again "
                f"(already fetched as page {page + 1}): the API's next link loops"
            )
        self._seen[target] = self.pages
        return target, {}


class NextLinkPaginator(_LinkPaginator):
    style = "nextLink"

    def _link(self, response: httpx.Response, body: Any) -> str | None:
        is_object = body.is_object if type(body) is BodyView else isinstance(body, dict)
        if not is_object and not self.spec.next_link_path:
            return None
        for path in self.plan.next_link:
            value = self._value(path, body)
            if value is None or value == "":
                continue
            if not isinstance(value, str):
                raise PaginationError(
                    f"pagination.nextLinkPath {path.expr!r} gave {a_json_type(value)}, not a URL, in the "
                    f"response of {self.display(self._current)}"
                )
            return value
        return None


class LinkHeaderPaginator(_LinkPaginator):
    style = "linkHeader"

    def _link(self, response: httpx.Response, body: Any) -> str | None:
        return find_link(parse_link_header(response.headers.get_list("link")), self.spec.link_rel or "next")


def _scalar_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


_STYLES: dict[PaginationType, type[Paginator]] = {
    PaginationType.none: NoPaginator,
    PaginationType.offset: OffsetPaginator,
    PaginationType.page: PagePaginator,
    PaginationType.cursor: CursorPaginator,
    PaginationType.next_link: NextLinkPaginator,
    PaginationType.link_header: LinkHeaderPaginator,
}
