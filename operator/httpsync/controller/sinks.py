"""Which sink (and which change-detection memory) a source's entities go to.

- No ``spec.sink``: the operator's default sink (Helm values ``defaultSink``): the embedded
  catalog, Port or a webhook, built once at start-up.
- ``spec.sink``: a Port or webhook sink built for the sync from the source's own Secrets
  (namespace-local), closed after it; ``type: catalog`` means the operator's embedded catalog.

The embedded catalog keeps its memory beside its entities (they live and die together). Remote
sinks share one local state file; the caller backs it up to ConfigMaps.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass

from httpsync.api.models import SinkSpec, SinkType
from httpsync.controller.config import OperatorConfig
from httpsync.engine.types import SecretResolver
from httpsync.errors import ConfigError
from httpsync.http.redact import register_secret
from httpsync.sinks.base import Sink, StateStore
from httpsync.sinks.catalog import Catalog, SqliteStateStore
from httpsync.sinks.factory import build_sink
from httpsync.sinks.port import PortSink
from httpsync.sinks.webhook import WebhookSink


@dataclass
class Target:
    sink: Sink
    state: StateStore
    remote: bool  # the memory must survive restarts on its own (ConfigMap backup)


class Sinks:
    def __init__(self, config: OperatorConfig, catalog: Catalog, remote_state: SqliteStateStore) -> None:
        self.config = config
        self.catalog = catalog
        self.remote_state = remote_state
        self.default = self._default_target()

    @classmethod
    async def open(cls, config: OperatorConfig) -> Sinks:
        config.catalog_path.parent.mkdir(parents=True, exist_ok=True)
        config.state_path.parent.mkdir(parents=True, exist_ok=True)
        catalog = await Catalog.open(config.catalog_path)
        remote_state = await SqliteStateStore.open_file(config.state_path)
        return cls(config, catalog, remote_state)

    def _default_target(self) -> Target:
        c = self.config
        if c.default_sink == "catalog":
            return Target(self.catalog.sink, self.catalog.state, remote=False)
        if c.default_sink == "port":
            if not (c.port_client_id and c.port_client_secret):
                raise ConfigError("the default sink is port but HTTPSYNC_PORT_CLIENT_ID/SECRET are not set")
            register_secret(c.port_client_secret)
            return Target(PortSink(c.port_base_url, c.port_client_id, c.port_client_secret), self.remote_state, True)
        if c.default_sink == "webhook":
            if not c.webhook_url:
                raise ConfigError("the default sink is webhook but HTTPSYNC_WEBHOOK_URL is not set")
            register_secret(c.webhook_secret)
            return Target(WebhookSink(c.webhook_url, secret=c.webhook_secret), self.remote_state, True)
        raise ConfigError(f"unknown default sink {c.default_sink!r}: use catalog, port or webhook")

    @contextlib.asynccontextmanager
    async def for_source(self, spec: SinkSpec | None, secrets: SecretResolver, source: str) -> AsyncIterator[Target]:
        """The target of one source's sync; a source-specific remote sink is closed afterwards."""
        if spec is None:
            yield self.default
            return
        if spec.type == SinkType.catalog:
            yield Target(self.catalog.sink, self.catalog.state, remote=False)
            return
        sink = await build_sink(spec, secrets, source=source)
        try:
            yield Target(sink, self.remote_state, remote=True)
        finally:
            await sink.aclose()

    async def aclose(self) -> None:
        for closer in (self.default.sink.aclose, self.catalog.aclose, self.remote_state.aclose):
            with contextlib.suppress(Exception):
                await closer()
