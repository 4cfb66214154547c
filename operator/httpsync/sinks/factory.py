"""Build the remote sink (Port or webhook) a sink spec describes, reading its Secret."""

from __future__ import annotations

from httpsync.api.models import SinkSpec, SinkType
from httpsync.engine.types import SecretResolver
from httpsync.sinks.base import Sink
from httpsync.sinks.port import PortSink
from httpsync.sinks.webhook import WebhookSink

PORT_CLIENT_ID_KEY = "clientId"
PORT_CLIENT_SECRET_KEY = "clientSecret"
WEBHOOK_SECRET_KEY = "secret"


async def build_sink(spec: SinkSpec, secrets: SecretResolver, *, source: str) -> Sink:
    """The sink for ``spec``. ``source`` names the producer in webhook payloads.

    Port reads ``clientId`` and ``clientSecret`` from the Secret ``port.secretRef.name``; the
    webhook reads its signing secret from ``webhook.secretRef`` (key ``secret`` by default), if
    set. A missing Secret or key raises the resolver's ``SecretError``. The catalog sink is built
    by the caller (it owns the catalog database): asking for it here is a ``ValueError``.
    """
    if spec.type == SinkType.port:
        if spec.port is None:
            raise ValueError("sink.port is required for sink.type port")
        name = spec.port.secret_ref.name
        client_id = await secrets.get(name, PORT_CLIENT_ID_KEY)
        client_secret = await secrets.get(name, PORT_CLIENT_SECRET_KEY)
        return PortSink(spec.port.base_url, client_id, client_secret)
    if spec.type == SinkType.webhook:
        if spec.webhook is None:
            raise ValueError("sink.webhook is required for sink.type webhook")
        ref = spec.webhook.secret_ref
        secret = await secrets.get(ref.name, ref.key or WEBHOOK_SECRET_KEY) if ref is not None else None
        return WebhookSink(spec.webhook.url, secret=secret, source=source)
    raise ValueError(f"build_sink does not build the {spec.type.value!r} sink: the caller owns it")
