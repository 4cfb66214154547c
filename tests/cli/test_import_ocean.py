"""``httpsync import ocean`` end to end: five Ocean configurations written after the integration's
documented examples are converted, then synced with ``httpsync sync`` against the loopback test
API (which checks each one's credentials), to the entities the Ocean mapping describes."""

from __future__ import annotations

import asyncio
import base64
import shutil
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from aiohttp import web

from httpsync.cli.importer import _dot_path_to_jq, dns_name, template_to_jq
from tests.cli.conftest import HTTPSYNC, Run, run_httpsync
from tests.testapi import server
from tests.testapi.server import ORGS, USERS, issues_of, repos_of

CASES = Path(__file__).parent / "ocean"
SECRET_VALUES = [
    server.BEARER_TOKEN,
    server.API_KEY,
    server.BASIC_PASSWORD,
    server.CLIENT_SECRET,
    "port-secret-1",
    "port-secret-2",
    "port-secret-3",
]
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _basic() -> str:
    return "Basic " + base64.b64encode(f"{server.BASIC_USER}:{server.BASIC_PASSWORD}".encode()).decode()


def _authorized(request: web.Request) -> bool:
    """Each case's endpoint accepts only that case's credentials."""
    path, headers = request.path, request.headers
    if path.startswith("/api/page/"):
        return headers.get("Authorization") == f"Bearer {server.BEARER_TOKEN}"
    if path.startswith("/api/cursor/"):
        return headers.get("X-Api-Token") == server.API_KEY
    if path.startswith("/api/odata/"):
        token = headers.get("Authorization", "").removeprefix("Bearer ")
        return request.app[server.STATE].tokens.get(token, 0) > time.monotonic()
    if path.startswith("/api/orgs"):
        return headers.get("Authorization") == _basic()
    if path.startswith("/api/link/"):
        return headers.get("X-Api-Key") == server.API_KEY
    return True


@web.middleware
async def _auth(request: web.Request, handler: Handler) -> web.StreamResponse:
    if not _authorized(request):
        return web.json_response({"error": "unauthorized"}, status=401)
    return await handler(request)


@pytest.fixture
async def api() -> Any:
    api = server.TestApi()
    api.app.middlewares.append(_auth)
    await api.start()
    try:
        yield api
    finally:
        await api.stop()


def case_copy(name: str, tmp: Path, url: str) -> Path:
    target = tmp / name
    shutil.copytree(CASES / name, target)
    for path in target.iterdir():
        path.write_text(path.read_text().replace("http://API_HOST", url))
    return target


def config_of(case: Path) -> Path:
    return case / "integration.yaml" if (case / "integration.yaml").exists() else case / "integration.env"


async def run_async(*args: str | Path) -> Run:
    """The console script, awaited, so that the loopback API keeps serving in this event loop."""
    proc = await asyncio.create_subprocess_exec(
        str(HTTPSYNC), *map(str, args), stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, err = await asyncio.wait_for(proc.communicate(), 120)
    assert proc.returncode is not None
    return Run(proc.returncode, out.decode(), err.decode())


def entity(identifier: str, blueprint: str, title: Any, properties: dict[str, Any] | None = None,
           relations: dict[str, Any] | None = None) -> dict[str, Any]:  # fmt: skip
    return {
        "identifier": identifier,
        "title": title,
        "blueprint": blueprint,
        "properties": properties or {},
        "relations": relations or {},
        "team": None,
        "icon": None,
    }


def expected_entities(name: str) -> list[dict[str, Any]]:
    """What the case's Ocean mapping makes of the test API's data, computed here in Python."""
    if name == "bearer-page":
        return [entity(str(u["id"]), "user", u["name"], {"email": u["email"], "active": u["active"]}) for u in USERS]
    if name == "apikey-cursor":
        return [entity(f"acct-{u['id']}", "account", u["name"], {"score": u["score"]}) for u in USERS if u["active"]]
    if name == "oauth-nextlink":
        return [entity(u["email"], "aadUser", u["name"], {"active": u["active"]}) for u in USERS]
    if name == "basic-offset-nested":
        orgs = [entity(o["login"], "org", o["login"]) for o in ORGS]
        issues = [
            entity(f"{o['login']}/{r['name']}#{i['number']}", "issue", i["title"], relations={"org": o["login"]})
            for o in ORGS
            for r in repos_of(o["login"])
            if r["name"] != "r 3"
            for i in issues_of(o["login"], r["name"])
        ]
        return orgs + issues
    assert name == "header-link"
    return [entity(u["email"], "contact", u["name"], {"score": u["score"]}) for u in USERS if u["score"] >= 500]


def _sorted(entities: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return sorted(entities, key=lambda e: (e["blueprint"], e["identifier"]))


@pytest.mark.parametrize(
    "name", ["bearer-page", "apikey-cursor", "oauth-nextlink", "basic-offset-nested", "header-link"]
)
async def test_import_then_sync_gives_the_ocean_mappings_entities(api: Any, tmp_path: Path, name: str) -> None:
    case = case_copy(name, tmp_path, api.url)
    out = tmp_path / "manifests"
    converted = await run_async(
        "import", "ocean", "--config", config_of(case), "--mapping", case / "port-app-config.yml",
        "--secret-values", case / "secret-values.env", "-n", "team-a", "-o", out,
    )  # fmt: skip
    assert converted.code == 0, converted.err
    for secret in SECRET_VALUES:
        assert secret not in converted.out + converted.err
    docs = [d for p in sorted(out.iterdir()) for d in yaml.safe_load_all(p.read_text())]
    kinds = [d["kind"] for d in docs]
    assert kinds.count("HttpSource") == 1 and "HttpEndpointMapping" in kinds
    assert all(d["metadata"]["namespace"] == "team-a" for d in docs)

    catalog = tmp_path / "catalog.db"
    # The imported source sends to Port (spec.sink.port); here into the embedded catalog, to compare.
    synced = await run_async("sync", "-f", out, "--catalog", catalog, "--sink", "catalog", "-o", "json")
    assert synced.code == 0, synced.err + synced.out
    results = synced.json()
    assert all(r["outcome"] == "Succeeded" and r["mappingErrors"] == 0 for r in results), results
    listed = run_httpsync("catalog", "list", "--catalog", catalog, "-o", "json")
    assert listed.code == 0, listed.err
    assert _sorted(listed.json()) == _sorted(expected_entities(name))
    for secret in SECRET_VALUES:
        assert secret not in synced.out + synced.err


def _import(case: Path, *extra: str | Path) -> Run:
    return run_httpsync(
        "import", "ocean", "--config", config_of(case), "--mapping", case / "port-app-config.yml", *extra
    )


def test_the_conversion_of_each_setting(tmp_path: Path) -> None:
    case = case_copy("bearer-page", tmp_path, "https://people.example.com")
    out = tmp_path / "out"
    r = _import(case, "--secret-values", case / "secret-values.env", "-o", out, "--name", "people")
    assert r.code == 0, r.err
    source = yaml.safe_load((out / "source.yaml").read_text())
    assert source["spec"] == {
        "baseUrl": "https://people.example.com",
        "auth": {"type": "bearer", "secretRef": {"name": "people-credentials"}},
        "pagination": {
            "type": "page", "pageSize": 25, "paginationParam": "page", "sizeParam": "size", "startPage": 1,
            "lastPagePath": ".last",
        },
        "timeoutSeconds": 45,
        "maxConcurrentRequests": 4,
        "interval": "2h",
        "sink": {"type": "port", "port": {
            "secretRef": {"name": "people-port"}, "baseUrl": "https://api.getport.io",
            "createMissingRelatedEntities": True, "deleteDependents": True,
        }},
    }  # fmt: skip
    secrets = {d["metadata"]["name"]: d["stringData"] for d in yaml.safe_load_all((out / "secret.yaml").read_text())}
    assert secrets == {
        "people-credentials": {"token": server.BEARER_TOKEN},
        "people-port": {"clientId": "port-id-1", "clientSecret": "port-secret-1"},
    }
    assert (out / "secret.yaml").stat().st_mode & 0o077 == 0
    mapping = yaml.safe_load((out / "mapping-api-page-users.yaml").read_text())
    assert mapping["spec"] == {
        "sourceRef": {"name": "people"},
        "kind": "/api/page/users",
        "selector": {"query": "true", "dataPath": ".items"},
        "mappings": {
            "identifier": ".id | tostring",
            "title": ".name",
            "blueprint": '"user"',
            "properties": {"email": ".email", "active": ".active"},
        },
    }
    # Settings without an equivalent: one line each, with the file and line.
    assert f"{case}/integration.yaml:14: timeout: Ocean ignored it" in r.err
    assert f"{case}/integration.yaml:22: initializePortResources: httpsync does not create blueprints" in r.err
    assert "createMissingRelatedEntities" not in r.err and "deleteDependentEntities" not in r.err, "both converted"
    # Writing again needs --force.
    again = _import(case, "-o", out, "--name", "people")
    assert again.code == 2 and "use --force" in again.err


def test_placeholders_when_no_values_are_given_and_nothing_secret_on_stdout(tmp_path: Path) -> None:
    case = case_copy("apikey-cursor", tmp_path, "https://crm.example.com")
    out = tmp_path / "out"
    r = _import(case, "-o", out)
    assert r.code == 0, r.err
    secrets = {d["metadata"]["name"]: d["stringData"] for d in yaml.safe_load_all((out / "secret.yaml").read_text())}
    assert secrets["crm-accounts-credentials"] == {"apiKey": "REPLACE_ME_CRM_API_KEY"}
    assert "fill in before applying: crm-accounts-credentials: apiKey (${CRM_API_KEY})" in r.err
    source = yaml.safe_load((out / "source.yaml").read_text())["spec"]
    assert source["auth"] == {
        "type": "apiKey",
        "secretRef": {"name": "crm-accounts-credentials"},
        "header": "X-Api-Token",
    }
    assert source["pagination"] == {
        "type": "cursor", "pageSize": 40, "paginationParam": "cursor", "sizeParam": "limit",
        "cursorPath": ".meta.after_cursor", "hasMorePath": ".meta.has_more",
    }  # fmt: skip
    mapping = yaml.safe_load((out / "mapping-api-cursor-users.yaml").read_text())["spec"]
    assert mapping["selector"]["queryParams"] == {"include_archived": "false", "region": "1"}
    assert mapping["deletionGuard"] == {"maxDeletePercent": 50}

    printed = _import(case, "--secret-values", case / "secret-values.env")  # no -o: to stdout
    assert printed.code == 0, printed.err
    assert server.API_KEY not in printed.out + printed.err and "port-secret-2" not in printed.out + printed.err
    docs = list(yaml.safe_load_all(printed.out))
    assert [d["kind"] for d in docs] == ["HttpSource", "Secret", "Secret", "HttpEndpointMapping"]
    assert docs[1]["stringData"] == {"apiKey": "REPLACE_ME_apiKey"}
    assert "the Secrets' values are not printed" in printed.err


def test_refusals_are_listed_line_by_line_and_nothing_is_written(tmp_path: Path) -> None:
    (tmp_path / "integration.yaml").write_text(
        "integration:\n"
        "  config:\n"
        "    baseUrl: https://api.example.com\n"
        "    authType: oauth\n"
        "    paginationType: keyset\n"
        "    multipleHosts: true\n"
        "    pageSize: lots\n"
    )
    (tmp_path / "port-app-config.yml").write_text(
        "entityDeletionThreshold: 3\n"
        "resources:\n"
        "  - kind: https://other.example.com/users\n"
        "    selector: {query: 'true'}\n"
        "    port: {entity: {mappings: {identifier: .id, blueprint: '\"u\"'}}}\n"
        "  - kind: /teams\n"
        "    selector:\n"
        "      query: 'true'\n"
        "      query_params:\n"
        "        ids: [1, 2]\n"
        "    port: {entity: {mappings: {identifier: .id, blueprint: '\"team\"'}}}\n"
    )
    out = tmp_path / "out"
    r = run_httpsync(
        "import", "ocean", "--config", tmp_path / "integration.yaml", "--mapping", tmp_path / "port-app-config.yml",
        "-o", out,
    )  # fmt: skip
    assert r.code == 2, r.err
    assert "Traceback" not in r.err
    cfg, app = tmp_path / "integration.yaml", tmp_path / "port-app-config.yml"
    for line in (
        f"{cfg}:4: authType: 'oauth' is unknown",
        f"{cfg}:5: paginationType: 'keyset' is unknown",
        f"{cfg}:6: multipleHosts:",
        f"{app}:1: entityDeletionThreshold: must be a number from 0 to 1",
        f"{app}:3: resources[0].kind: a full URL",
        f"{app}:10: resources[1].selector.query_params.ids: list values have no equivalent",
    ):
        assert f"httpsync: {line}" in r.err, r.err
    assert not out.exists()


def test_a_login_flow_other_than_client_credentials_becomes_custom_auth(tmp_path: Path) -> None:
    (tmp_path / "integration.yaml").write_text(
        "integration:\n"
        "  config:\n"
        "    baseUrl: https://api.example.com\n"
        "    authType: custom\n"
        "    customAuthRequest:\n"
        "      endpoint: /v1/auth/access_token\n"
        "      body: {clientId: id, clientSecret: '${SECRET}'}\n"
        "      reauthenticateIntervalSeconds: 3000\n"
        "    customAuthRequestTemplate:\n"
        "      headers: {Authorization: 'Bearer {{.accessToken}}'}\n"
    )
    (tmp_path / "port-app-config.yml").write_text(
        "resources:\n  - kind: /users\n    selector: {query: 'true'}\n"
        "    port: {entity: {mappings: {identifier: .id, blueprint: '\"u\"'}}}\n"
    )
    (tmp_path / "values.env").write_text("SECRET=s3cr3t-login-value\n")
    out = tmp_path / "out"
    r = run_httpsync(
        "import", "ocean", "--config", tmp_path / "integration.yaml", "--mapping", tmp_path / "port-app-config.yml",
        "--secret-values", tmp_path / "values.env", "-o", out, "--name", "api",
    )  # fmt: skip
    assert r.code == 0, r.err  # the output passed the same checks as `httpsync sync`
    assert "s3cr3t-login-value" not in r.out + r.err
    auth = yaml.safe_load((out / "source.yaml").read_text())["spec"]["auth"]
    assert auth == {
        "type": "custom",
        "secretRef": {"name": "api-credentials"},
        "custom": {
            "request": {
                "url": "/v1/auth/access_token", "method": "POST",
                "body": {"clientId": "id", "clientSecret": "${SECRET}"},
            },
            "template": {"headers": {"Authorization": '"Bearer " + (.accessToken | tostring)'}},
            "reauthenticateInterval": "3000s",
        },
    }  # fmt: skip
    secrets = {d["metadata"]["name"]: d["stringData"] for d in yaml.safe_load_all((out / "secret.yaml").read_text())}
    assert secrets["api-credentials"]["SECRET"] == "s3cr3t-login-value"


def test_item_name_other_than_item_is_reported(tmp_path: Path) -> None:
    from httpsync.api.models import SelectorSpec

    case = case_copy("header-link", tmp_path, "https://t.example.com")
    app = case / "port-app-config.yml"
    app.write_text(app.read_text().replace("      itemsToParse:", "      itemsToParseName: mail\n      itemsToParse:"))
    app.write_text(app.read_text().replace("identifier: .item", "identifier: .mail"))
    r = _import(case)
    assert r.code == 0, r.err
    mapping = list(yaml.safe_load_all(r.out))[-1]["spec"]
    if "items_to_parse_name" in SelectorSpec.model_fields:
        assert mapping["selector"]["itemsToParseName"] == "mail"
    else:
        assert f"{app}:9: resources[0].port.itemsToParseName: 'mail' is not yet supported" in r.err


def test_template_and_path_conversions() -> None:
    assert template_to_jq("Bearer {{.access_token}}") == '"Bearer " + (.access_token | tostring)'
    assert template_to_jq("{{ .token }}") == ".token"
    assert template_to_jq("{{.a}}:{{.b}}") == '(.a | tostring) + ":" + (.b | tostring)'
    assert template_to_jq("static") == '"static"'
    assert _dot_path_to_jq("meta.after_cursor") == ".meta.after_cursor"
    assert _dot_path_to_jq("@odata.nextLink") == '(."@odata.nextLink" // ."@odata".nextLink)'
    assert _dot_path_to_jq("next") == ".next"
    assert _dot_path_to_jq(".already.jq") == ".already.jq"
    assert dns_name("/api/v1/Users_{id}") == "api-v1-users-id"
    assert dns_name("///") == "resource"


@pytest.mark.cluster
def test_the_output_passes_a_server_side_dry_run(kube: Any, tmp_path: Path) -> None:
    ns = kube.new_namespace("import")
    for name in ("bearer-page", "apikey-cursor", "oauth-nextlink", "basic-offset-nested", "header-link"):
        case = case_copy(name, tmp_path, "https://api.example.com")
        out = tmp_path / f"{name}-out"
        r = _import(case, "--secret-values", case / "secret-values.env", "-n", ns, "-o", out)
        assert r.code == 0, r.err
        applied = kube.kubectl("apply", "--dry-run=server", "-f", str(out))
        documents = sum(len(list(yaml.safe_load_all(p.read_text()))) for p in out.iterdir())
        assert applied.stdout.count("(server dry run)") == documents, applied.stdout
        assert server.BEARER_TOKEN not in applied.stdout + applied.stderr


def test_search_query_relations_are_kept_or_refused_on_their_line(tmp_path: Path) -> None:
    from pydantic import ValidationError

    from httpsync.api.models import EntityMappingSpec

    (tmp_path / "integration.yaml").write_text("integration:\n  config:\n    baseUrl: https://api.example.com\n")
    (tmp_path / "port-app-config.yml").write_text(
        "resources:\n"
        "  - kind: /services\n"
        "    selector: {query: 'true'}\n"
        "    port:\n"
        "      entity:\n"
        "        mappings:\n"
        "          identifier: .id\n"
        "          blueprint: '\"service\"'\n"
        "          relations:\n"
        "            owner: .owner\n"
        "            team:\n"
        "              combinator: '\"and\"'\n"
        "              rules: [{property: '\"name\"', operator: '\"=\"', value: .team}]\n"
    )
    query = {"combinator": '"and"', "rules": [{"property": '"name"', "operator": '"="', "value": ".team"}]}
    try:
        EntityMappingSpec.model_validate({"identifier": ".id", "blueprint": '"b"', "relations": {"team": query}})
        supported = True
    except ValidationError:
        supported = False
    r = run_httpsync(
        "import", "ocean", "--config", tmp_path / "integration.yaml", "--mapping", tmp_path / "port-app-config.yml",
    )  # fmt: skip
    if supported:
        assert r.code == 0, r.err
        assert list(yaml.safe_load_all(r.out))[-1]["spec"]["mappings"]["relations"]["team"] == query
    else:
        assert r.code == 2, r.err
        assert (
            f"{tmp_path}/port-app-config.yml:11: resources[0].port.entity.mappings.relations.team: search queries"
            in r.err
        )


def test_settings_from_the_environment_and_unique_mapping_names(tmp_path: Path) -> None:
    (tmp_path / "integration.yaml").write_text(
        "integration:\n"
        "  identifier: Inventory_API\n"
        "  config:\n"
        "    baseUrl: '{{ from env API_URL }}'\n"
        "    paginationType: page\n"
        "    pageSize: ${PAGE_SIZE}\n"
    )
    resource = (
        "  - kind: /v1/Hosts\n"
        "    selector: {query: 'true'}\n"
        "    port: {entity: {mappings: {identifier: .id, blueprint: '\"host\"'}}}\n"
    )
    (tmp_path / "port-app-config.yml").write_text("resources:\n" + resource + resource)
    args = ["import", "ocean", "--config", tmp_path / "integration.yaml", "--mapping", tmp_path / "port-app-config.yml"]
    refused = run_httpsync(*args)
    assert refused.code == 2
    assert (
        f"{tmp_path}/integration.yaml:4: baseUrl: comes from the environment (${{API_URL}}): give API_URL"
        in refused.err
    )
    assert f"{tmp_path}/integration.yaml:6: pageSize: comes from the environment (${{PAGE_SIZE}})" in refused.err
    assert len(refused.err.splitlines()) == 4, refused.err  # a warning, the heading, two refusals: nothing more

    (tmp_path / "values.env").write_text("API_URL=https://inventory.example.com/v2\nPAGE_SIZE=50\n")
    r = run_httpsync(*args, "--secret-values", tmp_path / "values.env")
    assert r.code == 0, r.err
    docs = list(yaml.safe_load_all(r.out))
    assert docs[0]["metadata"]["name"] == "inventory-api"
    assert docs[0]["spec"]["baseUrl"] == "https://inventory.example.com/v2"
    assert docs[0]["spec"]["pagination"] == {"type": "page", "pageSize": 50}
    assert [d["metadata"]["name"] for d in docs[1:]] == ["v1-hosts", "v1-hosts-2"]
