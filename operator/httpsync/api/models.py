"""Pydantic models of the httpsync custom resources (group httpsync.io, version v1alpha1).

These models are the single source of truth for the resources' spec: the CRD YAML in
``crds/`` is generated from them (``httpsync.api.crdgen``) and a test proves the committed
files equal the generated ones. Field names on the wire are camelCase (Kubernetes
conventions); Python attributes are snake_case. Unknown fields are errors.

Extra CRD facts that JSON Schema cannot carry (CEL rules, list types, ``int-or-string``)
are attached with ``json_schema_extra`` under keys starting with ``x-kubernetes-``.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Annotated, Any, ClassVar, Literal, Self

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, PrivateAttr, field_validator, model_validator
from pydantic.alias_generators import to_camel

from httpsync.api.jqsafety import check_jq, refused_message

GROUP = "httpsync.io"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"

DURATION_RE = re.compile(r"^([0-9]+(\.[0-9]+)?(ms|s|m|h))+$")
_DURATION_PART = re.compile(r"([0-9]+(?:\.[0-9]+)?)(ms|s|m|h)")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}

# Bounds shared by the models and the generated CRD (they keep CEL cost estimates small).
NAME_MAX = 253
JQ_MAX = 4096
URL_MAX = 2048
HEADER_VALUE_MAX = 4096
MAP_MAX = 64
# Sync results: messages and error samples in the status.
RESULT_MESSAGE_MAX = 4096
SAMPLE_MAX = 1024
MAX_SAMPLES_STORED = 10  # what the status accepts
MAX_ERROR_SAMPLES = 5  # what the engine keeps
DEFAULT_MAX_RESPONSE_BYTES = 64 * 1024 * 1024
MAX_RESPONSE_BYTES = 1024 * 1024 * 1024


def parse_duration(text: str) -> float:
    """Seconds in a Go-style duration such as ``30s``, ``5m``, ``1h30m`` or ``250ms``."""
    if not DURATION_RE.match(text):
        raise ValueError(f"{text!r} is not a duration: use a number with a unit, like 30s, 5m or 1h")
    return sum(float(n) * _UNIT_SECONDS[u] for n, u in _DURATION_PART.findall(text))


@dataclass(frozen=True)
class Rule:
    """A cross-field rule, stated once: ``cel`` goes into the CRD (the API server enforces it),
    ``check`` is the same rule in Python (the CLI and the operator enforce it). A cluster test
    feeds the same invalid objects to both and expects the same message."""

    cel: str
    message: str
    check: Callable[[Any], bool]


def _add_rules(schema: dict[str, Any], cls: type) -> None:
    rules: tuple[Rule, ...] = cls.__dict__.get("__rules__", ())
    if rules:
        schema["x-kubernetes-validations"] = [{"rule": r.cel, "message": r.message} for r in rules]


class Model(BaseModel):
    """Base for every spec model: camelCase on the wire, unknown fields rejected."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="forbid",
        frozen=False,
        json_schema_extra=_add_rules,
    )
    __rules__: ClassVar[tuple[Rule, ...]] = ()

    @model_validator(mode="after")
    def _check_rules(self) -> Self:
        for rule in type(self).__dict__.get("__rules__", ()):
            if not rule.check(self):
                raise ValueError(rule.message)
        return self

    def to_wire(self) -> dict[str, Any]:
        return self.model_dump(by_alias=True, exclude_none=True, mode="json")


# jq text: the builtins that read the environment, input or files are refused (httpsync.api.jqsafety).
JqExpr = Annotated[str, Field(min_length=1, max_length=JQ_MAX), AfterValidator(check_jq)]
JqPath = Annotated[str, AfterValidator(check_jq)]
StrMap = Annotated[dict[str, Annotated[str, Field(max_length=HEADER_VALUE_MAX)]], Field(max_length=MAP_MAX)]


# --------------------------------------------------------------------------- references


class SecretKeyRef(Model):
    """A key of a Secret in the resource's own namespace."""

    name: str = Field(min_length=1, max_length=NAME_MAX, description="Name of a Secret in the same namespace.")
    key: str | None = Field(
        default=None,
        max_length=NAME_MAX,
        description="Key inside the Secret. Each auth type has its own default key (token, apiKey, ...).",
    )


class LocalObjectRef(Model):
    name: str = Field(min_length=1, max_length=NAME_MAX)


# --------------------------------------------------------------------------- auth


class HttpMethod(StrEnum):
    GET = "GET"
    POST = "POST"
    PUT = "PUT"
    PATCH = "PATCH"
    DELETE = "DELETE"
    HEAD = "HEAD"


class AuthType(StrEnum):
    none = "none"
    bearer = "bearer"
    api_key = "apiKey"
    basic = "basic"
    oauth2_client_credentials = "oauth2ClientCredentials"
    custom = "custom"


class ClientAuthMethod(StrEnum):
    form = "form"
    basic = "basic"


SECRET_REF_HELP = "Values may use ${key}: the value of that key of auth.secretRef's Secret ($${ for a literal ${)."
JqMap = Annotated[dict[str, JqExpr], Field(max_length=MAP_MAX)]


class CustomAuthRequestSpec(Model):
    """The login request of ``auth.type: custom``."""

    __rules__ = (
        Rule(
            "!(has(self.body) && has(self.bodyForm))",
            "auth.custom.request: set body (JSON) or bodyForm (form-encoded), not both",
            lambda r: r.body is None or r.body_form is None,
        ),
    )

    url: str = Field(
        min_length=1,
        max_length=URL_MAX,
        description="The login endpoint: an absolute URL, or a path joined to the source's baseUrl.",
    )
    method: HttpMethod = Field(default=HttpMethod.POST, description="HTTP method (default POST).")
    headers: StrMap = Field(default_factory=dict, description=f"Headers of the login request. {SECRET_REF_HELP}")
    query_params: StrMap = Field(
        default_factory=dict, description=f"Query parameters of the login request. {SECRET_REF_HELP}"
    )
    body: Any = Field(
        default=None,
        json_schema_extra={"type": "object", "x-kubernetes-preserve-unknown-fields": True},
        description=f"JSON object sent as the login request's body. {SECRET_REF_HELP}",
    )
    body_form: StrMap | None = Field(
        default=None, description=f"Fields sent form-encoded as the login request's body. {SECRET_REF_HELP}"
    )

    @field_validator("body")
    @classmethod
    def _body_object(cls, v: Any) -> Any:
        if v is not None and not isinstance(v, dict):
            raise ValueError("auth.custom.request.body must be a JSON object (use bodyForm for a form)")
        return v


class CustomAuthTemplateSpec(Model):
    """What every request to the API carries, built with jq from the login response."""

    __rules__ = (
        Rule(
            "(has(self.headers) && size(self.headers) > 0) || (has(self.queryParams) && size(self.queryParams) > 0) "
            "|| (has(self.body) && size(self.body) > 0)",
            "auth.custom.template needs at least one of headers, queryParams or body",
            lambda t: bool(t.headers or t.query_params or t.body),
        ),
    )

    headers: JqMap = Field(
        default_factory=dict,
        description="Header name -> jq over the login response, e.g. Authorization: '\"Bearer \" + .access_token'.",
    )
    query_params: JqMap = Field(default_factory=dict, description="Query parameter name -> jq over the login response.")
    body: JqMap = Field(
        default_factory=dict,
        description="Field name -> jq over the login response, merged into the JSON body of requests that have "
        "one and of every request but GET and HEAD.",
    )


class CustomAuthSpec(Model):
    """``auth.type: custom``: a login request whose response feeds the real requests."""

    request: CustomAuthRequestSpec
    template: CustomAuthTemplateSpec
    reauthenticate_interval: str | None = Field(
        default=None,
        max_length=32,
        pattern=DURATION_RE.pattern,
        description="Log in again after this long, like 50m (unset: keep the login until the API answers 401).",
    )
    expires_in_path: JqExpr | None = Field(
        default=None,
        description="jq path of the login's lifetime in seconds in its response, like .expires_in "
        "(wins over reauthenticateInterval when it gives a number).",
    )

    @field_validator("reauthenticate_interval")
    @classmethod
    def _interval(cls, v: str | None) -> str | None:
        if v is not None and parse_duration(v) <= 0:
            raise ValueError("auth.custom.reauthenticateInterval must be more than 0s")
        return v


class AuthSpec(Model):
    """How httpsync authenticates to the API. Credentials always come from a Secret.

    - ``bearer``: ``Authorization: Bearer <secret[key or 'token']>``
    - ``apiKey``: the key (secret[key or 'apiKey']) in ``header`` (default ``X-API-Key``) or ``queryParam``
    - ``basic``: username and password from the Secret's ``usernameKey``/``passwordKey``
    - ``oauth2ClientCredentials``: client id/secret from ``clientIdKey``/``clientSecretKey``,
      a token from ``tokenUrl`` cached until it expires
    - ``custom``: the login request of ``custom.request`` (its values may use ``${key}`` of the
      Secret), whose response ``custom.template`` turns into headers, query parameters or body fields
    """

    __rules__ = (
        Rule(
            "self.type in ['none', 'custom'] || has(self.secretRef)",
            "auth.secretRef is required unless auth.type is none or custom",
            lambda a: a.type in ("none", "custom") or a.secret_ref is not None,
        ),
        Rule(
            "(self.type == 'custom') == has(self.custom)",
            "auth.custom is required for auth.type custom, and only valid for it",
            lambda a: (a.type == "custom") == (a.custom is not None),
        ),
        Rule(
            "self.type == 'oauth2ClientCredentials' || "
            "!(has(self.tokenUrl) || has(self.scopes) || has(self.audience) || has(self.clientAuthMethod))",
            "tokenUrl, scopes, audience and clientAuthMethod are only valid for auth.type oauth2ClientCredentials",
            lambda a: (
                a.type == "oauth2ClientCredentials"
                or all(v is None for v in (a.token_url, a.scopes, a.audience, a.client_auth_method))
            ),
        ),
        Rule(
            "self.type != 'oauth2ClientCredentials' || has(self.tokenUrl)",
            "auth.tokenUrl is required for auth.type oauth2ClientCredentials",
            lambda a: a.type != "oauth2ClientCredentials" or a.token_url is not None,
        ),
        Rule(
            "self.type == 'apiKey' || !(has(self.header) || has(self.queryParam))",
            "header and queryParam are only valid for auth.type apiKey",
            lambda a: a.type == "apiKey" or (a.header is None and a.query_param is None),
        ),
        Rule(
            "!(has(self.header) && has(self.queryParam))",
            "set either auth.header or auth.queryParam, not both",
            lambda a: a.header is None or a.query_param is None,
        ),
        Rule(
            "self.type == 'basic' || !(has(self.usernameKey) || has(self.passwordKey))",
            "usernameKey and passwordKey are only valid for auth.type basic",
            lambda a: a.type == "basic" or (a.username_key is None and a.password_key is None),
        ),
    )

    type: AuthType = Field(
        default=AuthType.none, description="none, bearer, apiKey, basic, oauth2ClientCredentials or custom."
    )
    secret_ref: SecretKeyRef | None = Field(default=None, description="The Secret holding the credentials.")
    header: str | None = Field(default=None, max_length=256, description="apiKey: header name (default X-API-Key).")
    query_param: str | None = Field(
        default=None,
        max_length=256,
        description="apiKey: send the key as this query parameter instead of a header.",
    )
    username_key: str | None = Field(
        default=None, max_length=NAME_MAX, description="basic: Secret key of the username (default username)."
    )
    password_key: str | None = Field(
        default=None, max_length=NAME_MAX, description="basic: Secret key of the password (default password)."
    )
    token_url: str | None = Field(
        default=None, max_length=URL_MAX, description="oauth2ClientCredentials: the token endpoint."
    )
    scopes: list[Annotated[str, Field(max_length=256)]] | None = Field(default=None, max_length=32)
    audience: str | None = Field(default=None, max_length=URL_MAX)
    client_auth_method: ClientAuthMethod | None = Field(
        default=None,
        description="oauth2ClientCredentials: send client credentials in the form body (form, default) "
        "or as HTTP basic auth.",
    )
    client_id_key: str | None = Field(
        default=None,
        max_length=NAME_MAX,
        description="oauth2ClientCredentials: Secret key of the client id (default clientId).",
    )
    client_secret_key: str | None = Field(
        default=None,
        max_length=NAME_MAX,
        description="oauth2ClientCredentials: Secret key of the client secret (default clientSecret).",
    )
    custom: CustomAuthSpec | None = Field(default=None, description="custom: the login request and its use.")


# --------------------------------------------------------------------------- pagination


MAX_PREFETCH = 16


class PaginationType(StrEnum):
    none = "none"
    offset = "offset"
    page = "page"
    cursor = "cursor"
    next_link = "nextLink"
    link_header = "linkHeader"


class PaginationSpec(Model):
    """How to walk the pages of an endpoint. Paths (cursorPath, ...) are jq; a bare ``meta.after``
    is accepted and read as ``.meta.after``."""

    __rules__ = (
        Rule(
            "self.type == 'cursor' || !has(self.cursorPath)",
            "cursorPath is only valid for pagination.type cursor",
            lambda p: p.type == "cursor" or p.cursor_path is None,
        ),
        Rule(
            "self.type != 'cursor' || has(self.cursorPath)",
            "pagination.type cursor needs cursorPath (the jq path of the next cursor in the response)",
            lambda p: p.type != "cursor" or p.cursor_path is not None,
        ),
        Rule(
            "self.type == 'nextLink' || !has(self.nextLinkPath)",
            "nextLinkPath is only valid for pagination.type nextLink",
            lambda p: p.type == "nextLink" or p.next_link_path is None,
        ),
        Rule(
            "self.type == 'page' || !has(self.startPage)",
            "startPage is only valid for pagination.type page",
            lambda p: p.type == "page" or p.start_page is None,
        ),
        Rule(
            "self.type == 'linkHeader' || !has(self.linkRel)",
            "linkRel is only valid for pagination.type linkHeader",
            lambda p: p.type == "linkHeader" or p.link_rel is None,
        ),
        Rule(
            "!(self.type in ['none', 'nextLink', 'linkHeader']) || !(has(self.paginationParam) || has(self.totalPath))",
            "paginationParam and totalPath are only valid for offset, page and cursor pagination",
            lambda p: (
                p.type not in ("none", "nextLink", "linkHeader")
                or (p.pagination_param is None and p.total_path is None)
            ),
        ),
        Rule(
            "self.type in ['offset', 'page'] || !has(self.prefetch) || self.prefetch == 0",
            "prefetch is only valid for offset and page pagination (cursor and link pagination always "
            "request the next page as soon as the current one arrives)",
            lambda p: p.type in ("offset", "page") or not p.prefetch,
        ),
    )

    type: PaginationType = Field(
        default=PaginationType.none, description="none, offset, page, cursor, nextLink or linkHeader."
    )
    page_size: int = Field(default=100, ge=1, le=100000, description="Items requested per page.")
    pagination_param: str | None = Field(
        default=None,
        max_length=256,
        description="Query parameter of the offset/page/cursor (defaults: offset, page, cursor).",
    )
    size_param: str | None = Field(
        default=None,
        max_length=256,
        description="Query parameter of the page size (defaults: limit for offset and cursor, size for page). "
        "Empty string: do not send a size.",
    )
    start_page: int | None = Field(default=None, ge=0, description="page: number of the first page (default 1).")
    cursor_path: JqPath | None = Field(
        default=None,
        max_length=JQ_MAX,
        description="cursor: jq path of the next cursor in the response body.",
    )
    has_more_path: JqPath | None = Field(
        default=None, max_length=JQ_MAX, description="jq path of a boolean that says more pages follow."
    )
    last_page_path: JqPath | None = Field(
        default=None,
        max_length=JQ_MAX,
        description="jq path of a boolean that says this is the last page. For page pagination it may also give "
        "the number of the last page (any number but 0 and 1, which read as false and true); then the remaining "
        "pages are fetched concurrently.",
    )
    next_link_path: JqPath | None = Field(
        default=None,
        max_length=JQ_MAX,
        description='nextLink: jq path of the next page\'s URL (default ."@odata.nextLink", then .next).',
    )
    total_path: JqPath | None = Field(
        default=None,
        max_length=JQ_MAX,
        description="jq path of the total item count. With offset and page pagination, the pages after the first "
        "are then fetched concurrently (within maxConcurrentRequests and requestsPerSecond) and used in order.",
    )
    link_rel: str | None = Field(
        default=None, max_length=64, description="linkHeader: the rel to follow (default next)."
    )
    max_pages: int = Field(default=10000, ge=1, le=10_000_000, description="Stop with an error after this many pages.")
    prefetch: int | None = Field(
        default=None,
        ge=0,
        le=MAX_PREFETCH,
        description="offset and page pagination without a total: request up to this many pages ahead, "
        "speculatively, while earlier pages are in flight (default 0: off). What lies beyond the first short "
        "or empty page is discarded, so up to this many requests per endpoint may be wasted.",
    )


# --------------------------------------------------------------------------- source


class TlsSpec(Model):
    insecure_skip_verify: bool = Field(
        default=False, description="Do not verify the server's certificate. Only for tests."
    )
    ca_bundle: str | None = Field(
        default=None,
        max_length=65536,
        description="PEM CA certificates to trust, in addition to none (replaces the system store).",
    )


MIN_BACKOFF_SECONDS = 0.001


class RetrySpec(Model):
    """Retries of one request, after a backoff that doubles from backoffSeconds up to maxBackoffSeconds."""

    # The backoff must grow: a zero first backoff, or a cap below it, would retry at once, up to
    # maxRetries times per request, and hammer an API that is already failing. The floor is a CEL rule
    # rather than the schema's `minimum`: the API server compares an integer (`backoffSeconds: 0`) with
    # a fractional minimum truncated to an integer, and would accept it.

    __rules__ = (
        Rule(
            f"self.backoffSeconds >= {MIN_BACKOFF_SECONDS}",
            f"retry.backoffSeconds must be at least {MIN_BACKOFF_SECONDS}",
            lambda r: r.backoff_seconds >= MIN_BACKOFF_SECONDS,
        ),
        Rule(
            "self.maxBackoffSeconds >= self.backoffSeconds",
            "retry.maxBackoffSeconds must be at least retry.backoffSeconds",
            lambda r: r.max_backoff_seconds >= r.backoff_seconds,
        ),
    )

    max_retries: int = Field(
        default=5,
        ge=0,
        le=50,
        description="Retries of a request on connection errors, timeouts, 408, 429 and 5xx.",
    )
    backoff_seconds: float = Field(
        default=0.5,
        ge=0,
        le=60,
        description="First backoff (at least 0.001); it doubles on each retry, with jitter.",
    )
    max_backoff_seconds: float = Field(
        default=30, ge=0, le=3600, description="Cap of one backoff (at least backoffSeconds)."
    )
    max_retry_after_seconds: float = Field(
        default=300, ge=0, le=86400, description="Cap on Retry-After / X-RateLimit-Reset waits."
    )


class SinkType(StrEnum):
    catalog = "catalog"
    port = "port"
    webhook = "webhook"


class PortSinkSpec(Model):
    base_url: str = Field(
        default="https://api.getport.io",
        max_length=URL_MAX,
        pattern=r"^https?://",
        description="Port API base URL (EU https://api.getport.io, US https://api.us.getport.io).",
    )
    secret_ref: LocalObjectRef = Field(description="Secret with keys clientId and clientSecret.")
    create_missing_related_entities: bool = Field(
        default=True,
        description="Let Port create an entity a relation points to that does not exist yet "
        "(create_missing_related_entities). Off: such entities are sent again once the source's other mappings "
        "have pushed, and fail if the related entity still does not exist.",
    )
    delete_dependents: bool = Field(
        default=False,
        description="Delete the entities that depend on an entity httpsync deletes (delete_dependents). Off: Port "
        "refuses to delete an entity others depend on, and it is reported and kept.",
    )
    reconcile_drift: bool = Field(
        default=True,
        description="Each sync, list in Port the entities this mapping wrote (one search per blueprint) and push "
        "again those deleted or changed in Port by hand. Off: only what changed in the API is pushed; a lost local "
        "state still rebuilds ownership from Port.",
    )


class WebhookSinkSpec(Model):
    url: str = Field(min_length=1, max_length=URL_MAX, pattern=r"^https?://", description="Where batches are POSTed.")
    secret_ref: SecretKeyRef | None = Field(
        default=None,
        description="Secret (and key, default secret) holding the HMAC-SHA256 signing secret of X-Httpsync-Signature.",
    )


class SinkSpec(Model):
    __rules__ = (
        Rule(
            "self.type != 'port' || has(self.port)",
            "sink.port is required for sink.type port",
            lambda k: k.type != "port" or k.port is not None,
        ),
        Rule(
            "self.type != 'webhook' || has(self.webhook)",
            "sink.webhook is required for sink.type webhook",
            lambda k: k.type != "webhook" or k.webhook is not None,
        ),
    )

    type: SinkType
    port: PortSinkSpec | None = None
    webhook: WebhookSinkSpec | None = None


# The shortest spec.interval the API server accepts (a CEL rule) and, by default, the shortest the
# operator syncs at (``httpsync run --min-interval``): `interval: 0s` meant several syncs a second.
MIN_INTERVAL = "30s"
MIN_INTERVAL_SECONDS = parse_duration(MIN_INTERVAL)


class HttpSourceSpec(Model):
    """One API backend."""

    __rules__ = (
        Rule(
            f"duration(self.interval) >= duration('{MIN_INTERVAL}')",
            f"interval must be at least {MIN_INTERVAL}",
            lambda s: s.interval_seconds >= MIN_INTERVAL_SECONDS,
        ),
    )

    base_url: str = Field(
        min_length=1,
        max_length=URL_MAX,
        pattern=r"^https?://",
        description="Root URL of the API; a path in it is kept.",
    )
    auth: AuthSpec = Field(default_factory=AuthSpec)
    pagination: PaginationSpec = Field(default_factory=PaginationSpec)
    headers: StrMap = Field(default_factory=dict, description="Headers sent with every request (endpoint headers win).")
    query_params: StrMap = Field(
        default_factory=dict,
        description="Query parameters sent with every request (endpoint parameters win).",
    )
    timeout_seconds: float = Field(default=30, gt=0, le=3600, description="Timeout of one HTTP request.")
    tls: TlsSpec = Field(default_factory=TlsSpec)
    max_concurrent_requests: int = Field(
        default=10,
        ge=1,
        le=1000,
        description="Requests in flight at once, across all endpoints of the source.",
    )
    requests_per_second: float | None = Field(
        default=None, gt=0, le=100000, description="Rate limit (token bucket); unset means unlimited."
    )
    retry: RetrySpec = Field(default_factory=RetrySpec)
    mapping_timeout_seconds: float = Field(
        default=30,
        gt=0,
        le=3600,
        description="Deadline for decoding and mapping one page (jq included), in a worker process; a page over "
        "it stops its worker and fails the endpoint with reason MappingTimeout.",
    )
    max_response_bytes: int = Field(
        default=DEFAULT_MAX_RESPONSE_BYTES,
        ge=1024,
        le=MAX_RESPONSE_BYTES,
        description="Largest response body accepted, in bytes, counted after decompression and enforced while it "
        "streams in (default 64 MiB); a larger one fails the endpoint with reason ResponseTooLarge.",
    )
    # Operator-only fields (the CLI ignores them).
    interval: str = Field(
        default="1h",
        max_length=32,
        pattern=DURATION_RE.pattern,
        description=f"How often to sync, like 5m or 1h (at least {MIN_INTERVAL}).",
    )
    suspend: bool = Field(default=False, description="Stop syncing until set back to false.")
    sink: SinkSpec | None = Field(default=None, description="Where entities go; omitted: the operator's default sink.")

    @field_validator("interval")
    @classmethod
    def _interval(cls, v: str) -> str:
        parse_duration(v)
        return v

    @property
    def interval_seconds(self) -> float:
        return parse_duration(self.interval)

    @classmethod
    def validate_any_interval(cls, raw: Any) -> HttpSourceSpec:
        """``model_validate``, except that an interval under the minimum is kept rather than refused:
        a source created before the CRD had its rule. The operator applies its own floor to it."""
        interval = raw.get("interval") if isinstance(raw, dict) else None
        try:
            short = isinstance(interval, str) and parse_duration(interval) < MIN_INTERVAL_SECONDS
        except ValueError:
            short = False
        if not short:
            return cls.model_validate(raw)
        return cls.model_validate({**raw, "interval": MIN_INTERVAL}).model_copy(update={"interval": interval})


# --------------------------------------------------------------------------- endpoint mapping


class PathParameterSpec(Model):
    """Where the values of one ``{param}`` placeholder of ``kind`` come from."""

    endpoint: str = Field(
        min_length=1,
        max_length=URL_MAX,
        description="Endpoint listing the parent items; may use earlier placeholders.",
    )
    method: HttpMethod = HttpMethod.GET
    data_path: JqExpr | None = Field(default=None, description="jq path of the parent items' array (default .).")
    field: JqExpr = Field(default=".id", description="jq expression giving the parameter value from a parent item.")
    filter: JqExpr | None = Field(default=None, description="jq boolean; parents for which it is not true are skipped.")
    query_params: StrMap = Field(default_factory=dict)
    headers: StrMap = Field(default_factory=dict)


class SelectorSpec(Model):
    query: JqExpr = Field(default="true", description="jq boolean filter; items for which it is false are skipped.")
    data_path: JqExpr | None = Field(
        default=None, description="jq path of the array of items in each response (default .)."
    )
    method: HttpMethod = HttpMethod.GET
    query_params: StrMap = Field(default_factory=dict)
    headers: StrMap = Field(default_factory=dict)
    body: Any = Field(
        default=None,
        json_schema_extra={"x-kubernetes-preserve-unknown-fields": True},
        description="JSON body sent with every page request.",
    )
    path_parameters: Annotated[dict[str, PathParameterSpec], Field(max_length=8)] = Field(default_factory=dict)
    single_object: bool = Field(
        default=False,
        description="A dataPath that gives one object (not an array) makes that object the only item, "
        "instead of an error.",
    )


SEARCH_QUERY_HELP = (
    "A jq expression, or a Port search query {combinator, rules: [{property, operator, value}, or nested queries]} "
    "whose every string is jq (e.g. combinator: '\"and\"', value: .owner); the evaluated query goes to the sink as is."
)
SEARCH_QUERY_MAX_DEPTH = 4
SEARCH_QUERY_MAX_RULES = 32


def _jq_if_text(value: Any) -> Any:
    """A relation given as jq text is checked like every jq field (its search-query form, by the
    model's validator)."""
    return check_jq(value) if isinstance(value, str) else value


def check_search_query(value: Any, where: str, depth: int = 0) -> None:
    """A jq expression (string), or a ``{combinator, rules}`` search query whose strings are jq; else ValueError."""
    if isinstance(value, str):
        if not value or len(value) > JQ_MAX:
            raise ValueError(f"{where}: a jq expression of 1 to {JQ_MAX} characters is needed")
        refused = refused_message(value)
        if refused is not None:
            raise ValueError(f"{where}: {refused}")
        return
    if not isinstance(value, dict):
        raise ValueError(f"{where}: a jq expression (string) or a search query {{combinator, rules}} is needed")
    if depth >= SEARCH_QUERY_MAX_DEPTH:
        raise ValueError(f"{where}: search queries nest {SEARCH_QUERY_MAX_DEPTH} deep at most")
    if set(value) != {"combinator", "rules"}:
        raise ValueError(f"{where}: a search query has exactly the keys combinator and rules, not {sorted(value)}")
    check_search_query(value["combinator"], f"{where}.combinator", depth)
    if not isinstance(value["combinator"], str):
        raise ValueError(f"{where}.combinator: a jq expression is needed, like '\"and\"'")
    rules = value["rules"]
    if not isinstance(rules, list) or not rules or len(rules) > SEARCH_QUERY_MAX_RULES:
        raise ValueError(f"{where}.rules: a list of 1 to {SEARCH_QUERY_MAX_RULES} rules is needed")
    for i, rule in enumerate(rules):
        at = f"{where}.rules[{i}]"
        if isinstance(rule, dict) and "combinator" in rule:
            check_search_query(rule, at, depth + 1)
        elif isinstance(rule, dict) and set(rule) == {"property", "operator", "value"}:
            for key in ("property", "operator", "value"):
                if not isinstance(rule[key], str):
                    raise ValueError(f"{at}.{key}: a jq expression (string) is needed")
                check_search_query(rule[key], f"{at}.{key}", depth)
                check_search_query(rule[key], f"{at}.{key}", depth)
        else:
            raise ValueError(f"{at}: a rule {{property, operator, value}} or a nested {{combinator, rules}} is needed")


_ANY_JSON = {"x-kubernetes-preserve-unknown-fields": True}


class EntityMappingSpec(Model):
    identifier: JqExpr
    blueprint: JqExpr
    title: JqExpr | None = None
    team: Any = Field(default=None, json_schema_extra=_ANY_JSON, description=SEARCH_QUERY_HELP)
    icon: JqExpr | None = None
    properties: Annotated[dict[str, JqExpr], Field(max_length=256)] = Field(default_factory=dict)
    relations: Annotated[
        dict[str, Annotated[Any, AfterValidator(_jq_if_text), Field(json_schema_extra=_ANY_JSON)]],
        Field(max_length=256),
    ] = Field(
        default_factory=dict, description=f"Relation name -> value. {SEARCH_QUERY_HELP}"
    )

    @field_validator("team")
    @classmethod
    def _team(cls, v: Any) -> Any:
        if v is not None:
            check_search_query(v, "mappings.team")
        return v

    @field_validator("relations")
    @classmethod
    def _relations(cls, v: dict[str, Any]) -> dict[str, Any]:
        for name, value in v.items():
            check_search_query(value, f"mappings.relations.{name}")
        return v


class DeletionPolicy(StrEnum):
    delete = "Delete"
    keep = "Keep"


class DeletionGuardSpec(Model):
    max_delete_percent: int = Field(
        default=50,
        ge=0,
        le=100,
        description="A sync that would delete more than this share of the mapping's entities deletes nothing.",
    )
    disabled: bool = Field(default=False, description="Lift the guard for this mapping.")


class HttpEndpointMappingSpec(Model):
    """One endpoint of a source and how its items become entities."""

    __rules__ = (
        Rule(
            "!self.kind.contains('{') || has(self.selector) && has(self.selector.pathParameters)",
            "kind has {placeholders}: give each one in selector.pathParameters",
            lambda m: "{" not in m.kind or "path_parameters" in m.selector.model_fields_set,
        ),
        Rule(
            "has(self.itemsToParse) || !(has(self.itemsToParseName) || self.itemsToParseTopLevelTransform)",
            "itemsToParseName and itemsToParseTopLevelTransform need itemsToParse",
            lambda m: (
                m.items_to_parse is not None
                or (m.items_to_parse_name is None and not m.items_to_parse_top_level_transform)
            ),
        ),
    )

    source_ref: LocalObjectRef
    kind: str = Field(
        min_length=1,
        max_length=URL_MAX,
        description="Endpoint path (joined to the source's baseUrl), with optional {param} placeholders.",
    )
    selector: SelectorSpec = Field(default_factory=SelectorSpec)
    mappings: EntityMappingSpec
    items_to_parse: JqExpr | None = Field(
        default=None,
        description="jq array per item; each element becomes an entity, exposed as .item (itemsToParseName) "
        "next to the parent's fields.",
    )
    items_to_parse_name: str | None = Field(
        default=None,
        min_length=1,
        max_length=256,
        pattern=r"^[A-Za-z_][A-Za-z0-9_]*$",
        description="The key under which each itemsToParse element is exposed (default item).",
    )
    items_to_parse_top_level_transform: bool = Field(
        default=False,
        description="Remove the itemsToParse array (the path it starts with) from the parent before each element "
        "is merged into it, as Port's Ocean integrations do by default.",
    )
    pagination: PaginationSpec | None = Field(
        default=None, description="Replaces the source's pagination for this endpoint."
    )
    deletion_policy: DeletionPolicy = Field(
        default=DeletionPolicy.delete,
        description="Delete: remove this mapping's entities from the sink when the mapping is deleted; "
        "Keep: leave them.",
    )
    deletion_guard: DeletionGuardSpec = Field(default_factory=DeletionGuardSpec)


# --------------------------------------------------------------------------- status


class ConditionStatus(StrEnum):
    true = "True"
    false = "False"
    unknown = "Unknown"


class Condition(Model):
    model_config = ConfigDict(extra="ignore")
    type: str = Field(max_length=316)
    status: ConditionStatus
    observed_generation: int | None = Field(default=None, ge=0)
    last_transition_time: str = Field(json_schema_extra={"format": "date-time"})
    reason: str = Field(max_length=1024, pattern=r"^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$")
    message: str = Field(default="", max_length=32768)


Conditions = Annotated[
    list[Condition],
    Field(
        max_length=16,
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["type"]},
    ),
]


class MappingErrors(Model):
    model_config = ConfigDict(extra="ignore")
    count: int = 0
    samples: list[Annotated[str, Field(max_length=SAMPLE_MAX)]] = Field(
        default_factory=list, max_length=MAX_SAMPLES_STORED
    )


Outcome = Literal["Succeeded", "Failed"]


class EndpointSyncResult(Model):
    """The engine's per-endpoint result of one sync: its outcome and counters.

    This is the status' ``lastSync``; :class:`EndpointResult` adds what only the engine and the CLI
    need (which mapping, stalled, the deletion guard's message) to the same counters.
    """

    model_config = ConfigDict(extra="ignore")
    outcome: Outcome
    reason: str | None = None
    message: str | None = Field(default=None, max_length=RESULT_MESSAGE_MAX)
    requests: int = 0
    pages: int = 0
    items_fetched: int = 0
    items_filtered: int = 0
    entities: int = 0
    entities_upserted: int = 0
    entities_unchanged: int = 0
    entities_deleted: int = 0
    entities_failed: int = 0
    entities_duplicate: int = Field(
        default=0,
        description="Items skipped because an earlier item of the same sync produced the same blueprint and "
        "identifier (the first one wins; each is also a mapping error).",
    )
    entities_conflicting: int = Field(
        default=0,
        description="Entities another mapping produces too (the same blueprint and identifier): the sink keeps "
        "the one written last, and deletes it only when no mapping produces it any more (each is also a "
        "mapping error naming the other mapping).",
    )
    mapping_errors: MappingErrors = Field(default_factory=MappingErrors)
    sink_error_samples: list[Annotated[str, Field(max_length=SAMPLE_MAX)]] = Field(
        default_factory=list,
        max_length=MAX_SAMPLES_STORED,
        description="Why the sink rejected entities (some examples; entitiesFailed counts them).",
    )
    duration_seconds: float = 0.0

    @property
    def succeeded(self) -> bool:
        return self.outcome == "Succeeded"

    @property
    def entities_owned(self) -> int:
        """What the mapping owns in the sink after this sync (the sink's refusals stay owned)."""
        return self.entities_upserted + self.entities_unchanged + self.entities_failed

    @property
    def mapping_error_count(self) -> int:
        return self.mapping_errors.count

    @property
    def mapping_error_samples(self) -> list[str]:
        return self.mapping_errors.samples


class EndpointResult(EndpointSyncResult):
    """What one sync (or preview) of one mapping did, as the engine fills it in.

    The counters are those of :class:`EndpointSyncResult`; two views are derived from them:
    :meth:`to_status` (the status' ``lastSync``) and :meth:`to_json` (the CLI's ``-o json``).
    A result starts out ``Succeeded`` and :meth:`fail` turns it into ``Failed``.
    """

    mapping: str
    kind: str
    outcome: Outcome = "Succeeded"
    stalled: bool = False  # a failure a human must fix (kstatus Stalled)
    deletion_blocked: str | None = None  # the deletion guard's message when it held deletions back
    _started: float = PrivateAttr(default_factory=time.monotonic)

    def fail(self, reason: str, message: str, *, stalled: bool = False) -> Self:
        self.outcome = "Failed"
        self.reason = reason
        self.message = _shorten(message, RESULT_MESSAGE_MAX)
        self.stalled = stalled
        return self

    def finish(self) -> Self:
        """Stamp the duration since the result was made."""
        self.duration_seconds = round(time.monotonic() - self._started, 3)
        return self

    def to_status(self) -> EndpointSyncResult:
        """The status' ``lastSync`` (a model; its ``to_wire()`` is the dict to patch)."""
        return EndpointSyncResult.model_validate(self.model_dump(include=set(EndpointSyncResult.model_fields)))

    def to_json(self) -> dict[str, Any]:
        """The CLI's ``-o json`` object: the status' field names, with the mapping errors flattened
        (``mappingErrors`` is their count) and ``message`` always a string."""
        wire = self.model_dump(by_alias=True, mode="json")
        doc = {key: wire[key] for key in _CLI_KEYS}
        doc["message"] = doc["message"] or ""
        doc["mappingErrors"] = wire["mappingErrors"]["count"]
        doc["mappingErrorSamples"] = wire["mappingErrors"]["samples"]
        doc["deletionBlocked"] = wire["deletionBlocked"]
        doc["durationSeconds"] = wire["durationSeconds"]
        return doc


_CLI_KEYS = (
    "mapping", "kind", "outcome", "reason", "message", "requests", "pages", "itemsFetched", "itemsFiltered",
    "entities", "entitiesUpserted", "entitiesUnchanged", "entitiesDeleted", "entitiesFailed", "entitiesDuplicate",
    "entitiesConflicting",
)  # fmt: skip


def _shorten(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


class HttpEndpointMappingStatus(Model):
    model_config = ConfigDict(extra="ignore")
    observed_generation: int | None = None
    conditions: Conditions = Field(default_factory=list)
    last_handled_reconcile_at: str | None = None
    last_sync_time: str | None = Field(default=None, json_schema_extra={"format": "date-time"})
    last_successful_sync_time: str | None = Field(default=None, json_schema_extra={"format": "date-time"})
    entity_count: int | None = None
    endpoint: str | None = Field(default=None, description="The resolved URL of the endpoint (for display).")
    last_sync: EndpointSyncResult | None = None


class MappingSummary(Model):
    model_config = ConfigDict(extra="ignore")
    name: str
    ready: ConditionStatus
    reason: str | None = None
    message: str | None = Field(default=None, max_length=1024)


SOURCE_SUMMARY_MAX = 120


class HttpSourceStatus(Model):
    model_config = ConfigDict(extra="ignore")
    observed_generation: int | None = None
    conditions: Conditions = Field(default_factory=list)
    last_handled_reconcile_at: str | None = None
    last_sync_time: str | None = Field(default=None, json_schema_extra={"format": "date-time"})
    next_sync_time: str | None = Field(default=None, json_schema_extra={"format": "date-time"})
    endpoints_ready: int | None = None
    endpoints_total: int | None = None
    endpoints: str | None = Field(default=None, description="ready/total, for the printer column.")
    summary: str | None = Field(
        default=None,
        max_length=SOURCE_SUMMARY_MAX,
        description="Short form of the Ready condition for the STATUS column: its reason and, when "
        "endpoints fail, which mappings (the full text is the condition's message, and -o wide).",
    )
    mappings: list[MappingSummary] = Field(default_factory=list, max_length=100)


# --------------------------------------------------------------------------- whole objects (manifests)


class ObjectMeta(BaseModel):
    model_config = ConfigDict(extra="allow")
    name: str = Field(min_length=1, max_length=NAME_MAX)
    namespace: str | None = None
    generation: int | None = None
    annotations: dict[str, str] = Field(default_factory=dict)
    labels: dict[str, str] = Field(default_factory=dict)


class HttpSource(Model):
    api_version: Literal["httpsync.io/v1alpha1"] = API_VERSION
    kind: Literal["HttpSource"] = "HttpSource"
    metadata: ObjectMeta
    spec: HttpSourceSpec
    status: HttpSourceStatus | None = None


class HttpEndpointMapping(Model):
    api_version: Literal["httpsync.io/v1alpha1"] = API_VERSION
    kind: Literal["HttpEndpointMapping"] = "HttpEndpointMapping"
    metadata: ObjectMeta
    spec: HttpEndpointMappingSpec
    status: HttpEndpointMappingStatus | None = None
