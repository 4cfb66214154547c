"""The ``httpsync`` console script end to end: sync into the embedded catalog with the bundled demo
API, change detection across runs, catalog list, preview, exit codes and secret hygiene."""

from __future__ import annotations

import json
import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from httpsync.demo.server import PROJECTS, TICKETS, USERS, comments_of
from tests.cli.conftest import EXAMPLES, DemoCopy, Run

EXPECTED = {
    "comments": sum(len(comments_of(t["id"])) for t in TICKETS),
    "projects": sum(p["status"] == "active" for p in PROJECTS),
    "tickets": len(TICKETS),
    "users": sum(u["is_active"] and u["department"] == "engineering" for u in USERS),
}
TOKEN = "demo-token"

Httpsync = Callable[..., Run]


def by_mapping(results: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {r["mapping"]: r for r in results}


def port_is_free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def test_sync_the_port_overview_example_twice(httpsync: Httpsync, tmp_path: Path) -> None:
    assert port_is_free(18080), "port 18080 is taken: stop `httpsync demo-api` to run this test"
    catalog = tmp_path / "catalog.db"
    first = httpsync("sync", "--demo-api", "-f", EXAMPLES, "-o", "json", "--catalog", catalog)
    assert first.code == 0, first.err
    results = by_mapping(first.json())
    assert list(results) == ["comments", "projects", "tickets", "users"]
    for name, count in EXPECTED.items():
        r = results[name]
        assert (r["outcome"], r["reason"], r["itemsFetched"]) == ("Succeeded", None, count), r
        assert (r["entities"], r["entitiesUpserted"], r["entitiesUnchanged"], r["entitiesDeleted"]) == (
            count,
            count,
            0,
            0,
        )
        assert r["mappingErrors"] == 0
    assert results["users"]["pages"] == -(-EXPECTED["users"] // 25)  # paginated, 25 a page

    second = httpsync("sync", "--demo-api", "-f", EXAMPLES, "-o", "json", "--catalog", catalog)
    assert second.code == 0, second.err
    for name, r in by_mapping(second.json()).items():
        assert (r["entitiesUpserted"], r["entitiesUnchanged"], r["entitiesDeleted"]) == (0, EXPECTED[name], 0)

    listed = httpsync("catalog", "list", "--catalog", catalog, "-o", "json")
    assert listed.code == 0, listed.err
    entities = listed.json()
    assert len(entities) == sum(EXPECTED.values())
    assert [(e["blueprint"], e["identifier"]) for e in entities] == sorted(
        (e["blueprint"], e["identifier"]) for e in entities
    )
    assert set(entities[0]) == {"identifier", "title", "blueprint", "properties", "relations", "team", "icon"}
    user = next(e for e in entities if e["blueprint"] == "user")
    source = next(u for u in USERS if str(u["id"]) == user["identifier"])
    assert user["title"] == source["name"]
    assert user["properties"] == {
        "email": source["email"],
        "department": "engineering",
        "active": True,
        "created": source["created_at"],
    }
    comment = next(e for e in entities if e["blueprint"] == "comment")
    assert comment["relations"] == {"ticket": comment["identifier"][:3]}
    project = next(e for e in entities if e["blueprint"] == "project")
    assert project["properties"]["owner"].endswith("@example.com")


def test_table_output_and_catalog_filter(httpsync: Httpsync, demo_copy: DemoCopy, tmp_path: Path) -> None:
    catalog = tmp_path / "c.db"
    r = httpsync("sync", *demo_copy.demo_args(), "-f", demo_copy.dir, "--catalog", catalog)
    assert r.code == 0, r.err
    assert "users     /api/v1/users" in r.out and "Succeeded" in r.out
    assert f"4 endpoints: 4 succeeded, 0 failed. Catalog {catalog}: {sum(EXPECTED.values())} entities." in r.out
    tickets = httpsync("catalog", "list", "--catalog", catalog, "--blueprint", "ticket", "-o", "json").json()
    assert [t["identifier"] for t in tickets] == sorted(str(t["id"]) for t in TICKETS)
    table = httpsync("catalog", "list", "--catalog", catalog, "--blueprint", "project")
    assert table.out.splitlines()[0].split() == ["BLUEPRINT", "IDENTIFIER", "TITLE", "PROPERTIES/RELATIONS"]
    assert len(table.out.splitlines()) == 1 + EXPECTED["projects"]


def test_catalog_file_default_and_environment(httpsync: Httpsync, demo_copy: DemoCopy, tmp_path: Path) -> None:
    files = [
        "-f",
        demo_copy.dir / "tickets.yaml",
        "-f",
        demo_copy.dir / "source.yaml",
        "-f",
        demo_copy.dir / "secret.yaml",
    ]
    r = httpsync("sync", *demo_copy.demo_args(), *files, cwd=tmp_path)
    assert r.code == 0, r.err
    assert (tmp_path / "httpsync-catalog.db").exists()  # the default: ./httpsync-catalog.db
    assert len(httpsync("catalog", "list", "-o", "json", cwd=tmp_path).json()) == len(TICKETS)

    env = {"HTTPSYNC_CATALOG": str(tmp_path / "from-env.db")}
    r = httpsync("sync", *demo_copy.demo_args(), *files, "-o", "json", cwd=tmp_path, env=env)
    assert r.json()[0]["entitiesUpserted"] == len(TICKETS)  # a new, empty catalog
    assert (tmp_path / "from-env.db").exists()
    assert len(httpsync("catalog", "list", "-o", "json", cwd=tmp_path, env=env).json()) == len(TICKETS)


def test_an_unreachable_api_fails_and_deletes_nothing(httpsync: Httpsync, demo_copy: DemoCopy, tmp_path: Path) -> None:
    catalog = tmp_path / "c.db"
    assert httpsync("sync", *demo_copy.demo_args(), "-f", demo_copy.dir, "--catalog", catalog).code == 0
    r = httpsync("sync", "-f", demo_copy.dir, "--catalog", catalog, "-o", "json")  # nothing listens now
    assert r.code == 1
    for result in r.json():
        assert (result["outcome"], result["reason"], result["entitiesDeleted"]) == ("Failed", "ConnectionFailed", 0)
        assert f"127.0.0.1:{demo_copy.port}" in result["message"]
    listed = httpsync("catalog", "list", "--catalog", catalog, "-o", "json").json()
    assert len(listed) == sum(EXPECTED.values())


def test_vanished_entities_are_deleted_within_the_guard(
    httpsync: Httpsync, demo_copy: DemoCopy, tmp_path: Path
) -> None:
    catalog = tmp_path / "c.db"
    users = demo_copy.dir / "users.yaml"
    args = [
        "sync",
        *demo_copy.demo_args(),
        "-f",
        users,
        "-f",
        demo_copy.dir / "source.yaml",
        "-f",
        demo_copy.dir / "secret.yaml",
        "--catalog",
        catalog,
        "-o",
        "json",
    ]
    assert httpsync(*args).code == 0
    demo_copy.edit("users.yaml", "query: 'true'", "query: '.id > 100'")  # drops about 40%
    kept = sum(u["is_active"] and u["department"] == "engineering" and u["id"] > 100 for u in USERS)
    r = by_mapping(httpsync(*args).json())["users"]
    assert (r["outcome"], r["entitiesDeleted"], r["itemsFiltered"]) == (
        "Succeeded",
        EXPECTED["users"] - kept,
        EXPECTED["users"] - kept,
    )
    demo_copy.edit("users.yaml", "query: '.id > 100'", "query: '.id > 230'")  # would drop most: blocked
    r = by_mapping(httpsync(*args).json())["users"]
    assert (r["outcome"], r["reason"], r["entitiesDeleted"]) == ("Succeeded", "DeletionBlocked", 0)
    assert "spec.deletionGuard.disabled: true" in r["deletionBlocked"]
    assert len(httpsync("catalog", "list", "--catalog", catalog, "-o", "json").json()) == kept


def test_preview_writes_nothing_and_shows_every_error(httpsync: Httpsync, demo_copy: DemoCopy, tmp_path: Path) -> None:
    r = httpsync(
        "preview",
        *demo_copy.demo_args(),
        "-f",
        demo_copy.dir,
        "--mapping",
        "users",
        "--limit",
        "5",
        "-o",
        "json",
        cwd=tmp_path,
    )
    assert r.code == 0, r.err
    (users,) = r.json()
    assert (users["mapping"], users["outcome"], users["errors"]) == ("users", "Succeeded", [])
    assert [e["blueprint"] for e in users["entities"]] == ["user"] * 5
    assert not (tmp_path / "httpsync-catalog.db").exists()

    demo_copy.edit("users.yaml", "identifier: .id ", "identifier: .missing ")
    r = httpsync("preview", *demo_copy.demo_args(), "-f", demo_copy.dir, "--mapping", "users", "--limit", "5")
    assert r.code == 0, r.err
    import yaml

    (users,) = yaml.safe_load(r.out)
    assert users["entities"] == []
    assert users["errors"] == ["mappings.identifier is null"] * EXPECTED["users"]


def test_invalid_jq_exits_2_naming_file_object_and_field(
    httpsync: Httpsync, demo_copy: DemoCopy, tmp_path: Path
) -> None:
    demo_copy.edit("users.yaml", "email: .email", "email: .email | nosuchfunction")
    for command in ("sync", "preview"):
        r = httpsync(command, "-f", demo_copy.dir, cwd=tmp_path)
        assert r.code == 2
        assert "users.yaml: HttpEndpointMapping users: mappings.properties.email: invalid jq" in r.err
    assert not (tmp_path / "httpsync-catalog.db").exists()


@pytest.mark.parametrize(
    ("file", "old", "new", "message"),
    [
        (
            "users.yaml",
            "dataPath: .users",
            "dataPth: .users",
            "HttpEndpointMapping users: spec.selector.dataPth: unknown field",
        ),
        (
            "tickets.yaml",
            "name: demo-api",
            "name: nowhere",
            "HttpEndpointMapping tickets: spec.sourceRef.name: no HttpSource nowhere",
        ),
        ("source.yaml", "type: page", "type: pages", "HttpSource demo-api: spec.pagination.type:"),
        (
            "comments.yaml",
            "field: .id",
            "field: .id |",
            "HttpEndpointMapping comments: selector.pathParameters.ticket_id.field: invalid jq",
        ),
        (
            "source.yaml",
            "    type: bearer\n",
            "    type: custom\n    custom:\n      request: {url: /login, bodyForm: {p: '${password}'}}\n"
            "      template: {headers: {Authorization: '\"Bearer \" + .token |'}}\n",
            "HttpSource demo-api: auth.custom.template.headers.Authorization: invalid jq",
        ),
    ],
)
def test_invalid_manifests_exit_2(
    httpsync: Httpsync, demo_copy: DemoCopy, file: str, old: str, new: str, message: str
) -> None:
    demo_copy.edit(file, old, new)
    r = httpsync("sync", "-f", demo_copy.dir, "--catalog", demo_copy.dir / "c.db")
    assert r.code == 2
    assert f"{file}: {message}" in r.err, r.err
    assert r.out == ""


def test_missing_paths_and_other_kinds(httpsync: Httpsync, demo_copy: DemoCopy) -> None:
    r = httpsync("sync", "-f", demo_copy.dir / "nope.yaml")
    assert (r.code, r.err.strip()) == (2, f"httpsync: {demo_copy.dir / 'nope.yaml'}: no such file or directory")
    (demo_copy.dir / "extra.yaml").write_text("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: cm\n")
    r = httpsync("preview", *demo_copy.demo_args(), "-f", demo_copy.dir, "--mapping", "tickets", "--limit", "1")
    assert r.code == 0, r.err
    assert "ignoring ConfigMap cm" in r.err


def test_secret_values_are_never_printed(httpsync: Httpsync, demo_copy: DemoCopy, tmp_path: Path) -> None:
    outputs = [
        httpsync("-vv", "sync", *demo_copy.demo_args(), "-f", demo_copy.dir, "--catalog", tmp_path / "c.db"),
        httpsync("preview", *demo_copy.demo_args(), "-f", demo_copy.dir, "-o", "yaml"),
    ]
    assert all(o.code == 0 for o in outputs)
    # The key sent as a query parameter shows up in request URLs, which must be masked.
    demo_copy.edit("source.yaml", "type: bearer", "type: apiKey\n    queryParam: api_key")
    failed = httpsync("-vv", "sync", *demo_copy.demo_args(), "-f", demo_copy.dir, "--catalog", tmp_path / "c.db")
    assert failed.code == 1
    assert "401" in failed.out and "api_key=" in failed.out + failed.err
    outputs.append(failed)
    for o in outputs:
        assert TOKEN not in o.out and TOKEN not in o.err
    assert json.dumps(TOKEN) not in failed.out


def test_the_demo_api_port_in_use_is_a_clear_error(httpsync: Httpsync, demo_copy: DemoCopy) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", demo_copy.port))
        s.listen()
        r = httpsync("sync", *demo_copy.demo_args(), "-f", demo_copy.dir, "--catalog", demo_copy.dir / "c.db")
    assert r.code == 1
    assert f"cannot serve the demo API on 127.0.0.1:{demo_copy.port}" in r.err
