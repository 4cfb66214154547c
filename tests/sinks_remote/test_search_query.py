"""Search-query relations and team (``{combinator, rules}``) reach Port and a webhook as queries,
evaluated from the item, unchanged by the sinks."""

from __future__ import annotations

from typing import Any

from httpsync.api.models import EntityMappingSpec
from httpsync.engine.mapping import Mapper
from httpsync.sinks.webhook import WebhookSink
from tests.portapi.fixtures import port_sink
from tests.portapi.server import PortApi
from tests.sinks_remote.conftest import Receiver

OWNER = "team-a/services"
MAPPINGS = EntityMappingSpec.model_validate(
    {
        "identifier": ".name",
        "blueprint": '"service"',
        "team": {"combinator": '"and"', "rules": [{"property": '"$identifier"', "operator": '"="', "value": ".squad"}]},
        "relations": {
            "owner": {
                "combinator": '"and"',
                "rules": [{"property": '"email"', "operator": '"="', "value": ".owner"}],
            },
            "repo": ".repo",
        },
    }
)
ITEM = {"name": "checkout", "squad": "payments", "owner": "ann@example.com", "repo": "checkout-svc"}
TEAM = {"combinator": "and", "rules": [{"property": "$identifier", "operator": "=", "value": "payments"}]}
OWNER_QUERY = {"combinator": "and", "rules": [{"property": "email", "operator": "=", "value": "ann@example.com"}]}


def mapped() -> list[Any]:
    page = Mapper("true", MAPPINGS).map_page([dict(ITEM)])
    assert page.errors == []
    return page.entities


async def test_search_queries_reach_port_unchanged(portapi: PortApi) -> None:
    sink = port_sink(portapi)
    try:
        report = await sink.upsert(OWNER, mapped())
    finally:
        await sink.aclose()
    assert report.failed == []
    stored = portapi.state.entity("service", "checkout")
    assert stored is not None
    assert stored["team"] == TEAM
    assert stored["relations"] == {"owner": OWNER_QUERY, "repo": "checkout-svc"}


async def test_search_queries_reach_a_webhook_unchanged(receiver: Receiver) -> None:
    sink = WebhookSink(receiver.url, backoff=0.001, source="team-a/src")
    try:
        await sink.upsert(OWNER, mapped())
    finally:
        await sink.aclose()
    [upsert] = receiver.received[0].json()["upserts"]
    assert upsert["team"] == TEAM
    assert upsert["relations"] == {"owner": OWNER_QUERY, "repo": "checkout-svc"}
