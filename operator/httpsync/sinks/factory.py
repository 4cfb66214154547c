"""Which sink (and which change-detection memory) a source's entities go to.

- No ``spec.sink``: the default sink (:attr:`SinkSettings.default_sink`, Helm values ``defaultSink``):
  the embedded catalog, Port or a webhook, built once when the :class:`Sinks` open.
- ``spec.sink``: a Port or webhook sink built for the sync from the source's own Secrets
  (namespace-local), closed after it (:func:`build_sink`); ``type: catalog`` means the embedded catalog.

The embedded catalog keeps its memory beside its entities (they live and die together). Remote
sinks share one local state file (:attr:`SinkSettings.state_path`).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path

from httpsync.api.models import SinkSpec, SinkType
from httpsync.engine.ports import Sink, StateStore
from httpsync.engine.types import SecretResolver
from httpsync.engine.url import display_url
from httpsync.errors import ConfigError
from httpsync.http.policy import DestinationPolicy, check_url_resolved
from httpsync.http.redact import register_secret
from httpsync.sinks.catalog import Catalog
from httpsync.sinks.port import PortSink
from httpsync.sinks.webhook import WebhookSink
from httpsync.state.sqlite import SqliteStateStore

PORT_CLIENT_ID_KEY = "clientId"
PORT_CLIENT_SECRET_KEY = "clientSecret"
WEBHOOK_SECRET_KEY = "secret"
DEFAULT_PORT_BASE_URL = "https://api.getport.io"


def env_flag(name: str, default: bool) -> bool:
    """A boolean environment variable (true/false, 1/0, yes/no); ``default`` when unset or empty."""
    value = os.environ.get(name, "").strip().lower()
    if not value:
        return default
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise ConfigError(f"{name}={value!r}: use true or false")


@dataclass(frozen=True)
class SinkSettings:
    """What the sinks are built from (the operator fills it from its configuration)."""

    catalog_path: Path
    state_path: Path  # the change-detection memory of remote sinks
    default_sink: str = "catalog"  # catalog, port or webhook
    port_base_url: str = DEFAULT_PORT_BASE_URL
    port_client_id: str | None = None
    port_client_secret: str | None = None
    port_create_missing_related_entities: bool = field(
        default_factory=lambda: env_flag("HTTPSYNC_PORT_CREATE_MISSING_RELATED_ENTITIES", True)
    )
    port_delete_dependents: bool = field(default_factory=lambda: env_flag("HTTPSYNC_PORT_DELETE_DEPENDENTS", False))
    port_reconcile_drift: bool = field(default_factory=lambda: env_flag("HTTPSYNC_PORT_RECONCILE_DRIFT", True))
    webhook_url: str | None = None
    webhook_secret: str | None = None
    # What a source's own sink (spec.sink: a webhook url, a Port baseUrl) may reach: the operator's
    # destination policy (by default its default deny list). The default sink is the operator's own
    # configuration and is not checked.
    policy: DestinationPolicy = field(default_factory=DestinationPolicy)


@dataclass(frozen=True, slots=True)
class Target:
    """Where one source's sync goes: the sink, and the memory of what was pushed to it."""

    sink: Sink
    state: StateStore


async def build_sink(
    spec: SinkSpec, secrets: SecretResolver, *, source: str, check_url: Callable[[str], None] | None = None
) -> Sink:
    """The remote sink (Port or webhook) for ``spec``. ``source`` names the producer in webhook payloads.

    Port reads ``clientId`` and ``clientSecret`` from the Secret ``port.secretRef.name``; the
    webhook reads its signing secret from ``webhook.secretRef`` (key ``secret`` by default), if
    set. A missing Secret or key raises the resolver's ``SecretError``. The catalog sink is not
    built here (:class:`Sinks` owns the catalog database): asking for it is a ``ValueError``.
    ``check_url`` (a destination policy's ``check``) is asked about the sink's URL now, with its DNS
    answers, and about every request it sends (``DestinationDeniedError``).
    """
    if spec.type == SinkType.port:
        if spec.port is None:
            raise ValueError("sink.port is required for sink.type port")
        name = spec.port.secret_ref.name
        client_id = await secrets.get(name, PORT_CLIENT_ID_KEY)
        client_secret = await secrets.get(name, PORT_CLIENT_SECRET_KEY)
        port = spec.port
        await check_url_resolved(check_url, display_url(port.base_url))
        return PortSink(
            port.base_url,
            client_id,
            client_secret,
            check_url=check_url,
            create_missing_related_entities=port.create_missing_related_entities,
            delete_dependents=port.delete_dependents,
            reconcile_drift=port.reconcile_drift,
        )
    if spec.type == SinkType.webhook:
        if spec.webhook is None:
            raise ValueError("sink.webhook is required for sink.type webhook")
        ref = spec.webhook.secret_ref
        secret = await secrets.get(ref.name, ref.key or WEBHOOK_SECRET_KEY) if ref is not None else None
        await check_url_resolved(check_url, display_url(spec.webhook.url))
        return WebhookSink(spec.webhook.url, secret=secret, source=source, check_url=check_url)
    raise ValueError(f"build_sink does not build the {spec.type.value!r} sink: Sinks owns it")


def _default_sink(settings: SinkSettings) -> Sink | None:
    """The default remote sink, or None for the embedded catalog."""
    s = settings
    if s.default_sink == "catalog":
        return None
    if s.default_sink == "port":
        if not (s.port_client_id and s.port_client_secret):
            raise ConfigError("the default sink is port but HTTPSYNC_PORT_CLIENT_ID/SECRET are not set")
        register_secret(s.port_client_secret)
        return PortSink(
            s.port_base_url,
            s.port_client_id,
            s.port_client_secret,
            create_missing_related_entities=s.port_create_missing_related_entities,
            delete_dependents=s.port_delete_dependents,
            reconcile_drift=s.port_reconcile_drift,
        )
    if s.default_sink == "webhook":
        if not s.webhook_url:
            raise ConfigError("the default sink is webhook but HTTPSYNC_WEBHOOK_URL is not set")
        register_secret(s.webhook_secret)
        return WebhookSink(s.webhook_url, secret=s.webhook_secret)
    raise ConfigError(f"unknown default sink {s.default_sink!r}: use catalog, port or webhook")


class Sinks:
    """The embedded catalog, the remote sinks' memory, and the default target, open for the
    operator's lifetime. Open with :meth:`open`, close with :meth:`aclose`."""

    def __init__(
        self, catalog: Catalog, remote_state: SqliteStateStore, default: Target, policy: DestinationPolicy | None = None
    ) -> None:
        self.catalog = catalog
        self.remote_state = remote_state
        self.default = default
        self.policy = policy if policy is not None else DestinationPolicy()

    @classmethod
    async def open(cls, settings: SinkSettings) -> Sinks:
        """Open the catalog and state files (creating their folders) and build the default sink.
        A default sink that is not configured raises :class:`ConfigError`."""
        settings.catalog_path.parent.mkdir(parents=True, exist_ok=True)
        settings.state_path.parent.mkdir(parents=True, exist_ok=True)
        catalog = await Catalog.open(settings.catalog_path)
        remote_state: SqliteStateStore | None = None
        try:
            remote_state = await SqliteStateStore.open_file(settings.state_path)
            sink = _default_sink(settings)
            default = Target(catalog.sink, catalog.state) if sink is None else Target(sink, remote_state)
            return cls(catalog, remote_state, default, settings.policy)
        except BaseException:
            if remote_state is not None:
                await remote_state.aclose()
            await catalog.aclose()
            raise

    @contextlib.asynccontextmanager
    async def for_source(self, spec: SinkSpec | None, secrets: SecretResolver, source: str) -> AsyncIterator[Target]:
        """The target of one source's sync; a source-specific remote sink is closed afterwards."""
        if spec is None:
            yield self.default
            return
        if spec.type == SinkType.catalog:
            yield Target(self.catalog.sink, self.catalog.state)
            return
        sink = await build_sink(spec, secrets, source=source, check_url=self.policy.check)
        try:
            yield Target(sink, self.remote_state)
        finally:
            await sink.aclose()

    async def aclose(self) -> None:
        for closer in (self.default.sink.aclose, self.catalog.aclose, self.remote_state.aclose):
            with contextlib.suppress(Exception):
                await closer()
