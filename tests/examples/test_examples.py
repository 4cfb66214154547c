"""The examples under examples/: every manifest is valid for the CLI (the models, jq compiled) and for the real API
server (server-side dry run against the CRDs); each pagination example walks every page of an emulation of its API
as that API serves them; and the quickstart, applied as a user applies it, gets Ready under the operator."""

from __future__ import annotations

import base64
import signal
import subprocess
import sys
import urllib.request
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import pytest
import yaml
from aiohttp import web

from httpsync.api.models import HttpSource, HttpSourceSpec
from httpsync.cli.common import check_mappings, pagination_of
from httpsync.cli.manifests import Manifests, load_manifests, namespace_of
from httpsync.demo import server as demo
from httpsync.engine.auth import secret_keys
from httpsync.engine.runner import run_source
from httpsync.engine.sync import PreviewResult, failed_result, preview_mapping
from httpsync.errors import EngineError
from tests.controller.harness import Operator, _free_port, condition, get, wait_for

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = REPO / "examples"
QUICKSTART = EXAMPLES / "quickstart"
FOLDERS = sorted(p for p in EXAMPLES.iterdir() if p.is_dir())
# Files that must each stand alone (Secret + HttpSource + HttpEndpointMapping) with placeholder credentials.
STANDALONE = sorted(p for folder in ("pagination", "sinks", "auth") for p in (EXAMPLES / folder).glob("*.yaml"))
PLACEHOLDER = "REPLACE_ME"


def docs_of(path: Path) -> list[dict[str, Any]]:
    files = sorted(path.glob("*.yaml")) if path.is_dir() else [path]
    return [d for f in files for d in yaml.safe_load_all(f.read_text()) if d]


def referenced_secrets(spec: HttpSourceSpec) -> list[tuple[str, str]]:
    """(Secret, key) pairs a source reads: its auth and its sink."""
    refs = [(spec.auth.secret_ref.name, key) for key in secret_keys(spec.auth)] if spec.auth.secret_ref else []
    sink = spec.sink
    if sink is not None and sink.port is not None:
        refs += [(sink.port.secret_ref.name, "clientId"), (sink.port.secret_ref.name, "clientSecret")]
    if sink is not None and sink.webhook is not None and sink.webhook.secret_ref is not None:
        refs.append((sink.webhook.secret_ref.name, sink.webhook.secret_ref.key or "secret"))
    return refs


class ScopedOperator(Operator):
    """tests/controller/test_operator.py's operator subprocess, watching ``namespaces`` (none: all) and talking to
    the API server with ``kubeconfig`` (default: the admin's)."""

    def __init__(self, kube: Any, workdir: Path, namespaces: list[str], kubeconfig: str | None = None) -> None:
        super().__init__(kube, workdir)
        self.namespaces = namespaces
        self.kubeconfig = kubeconfig or kube.kubeconfig

    def start(self) -> None:
        scope = [arg for ns in self.namespaces for arg in ("--namespace", ns)] or ["--all-namespaces"]
        args = [
            sys.executable, "-m", "httpsync.controller", *scope,
            "--catalog", str(self.catalog),
            "--metrics-port", str(self.metrics_port),
            "--health-port", str(self.health_port),
        ]  # fmt: skip
        env = {k: v for k, v in self.kube.env.items() if not k.startswith("HTTPSYNC_")}
        env.update(KUBECONFIG=self.kubeconfig, PYTHONUNBUFFERED="1", HTTPSYNC_STATE=str(self.state))
        with open(self.logfile, "ab") as log:
            self.proc = subprocess.Popen(args, env=env, stdout=log, stderr=subprocess.STDOUT)
        wait_for(self._healthy, "the operator's /healthz", operator=self, timeout=60)


# ---------------------------------------------------------------------------- every manifest, for the CLI


# examples/cronjob carries its manifests inside a ConfigMap: tests/examples/test_cronjob.py loads them.
@pytest.mark.parametrize("folder", [f for f in FOLDERS if f.name != "cronjob"], ids=lambda p: p.name)
def test_every_folder_loads_with_the_cli_loader_and_its_jq_compiles(folder: Path) -> None:
    manifests = load_manifests([folder])  # raises ManifestError listing every problem
    assert manifests.sources and manifests.mappings, f"{folder.name}: no HttpSource or no HttpEndpointMapping"
    check_mappings(manifests, manifests.mappings)  # every jq of mappings, selector and pagination compiles
    ignored = [n for n in manifests.notes if "ignoring" in n]
    allowed = {"quickstart": {"Deployment demo-api", "Service demo-api"}}.get(folder.name, set())
    assert all(any(f"ignoring {obj} " in n for obj in allowed) for n in ignored), ignored
    for doc in docs_of(folder):
        assert "namespace" not in doc["metadata"], f"{doc['kind']} {doc['metadata']['name']}: applies into any -n"


def test_every_manifest_is_a_yaml_file_of_an_example_folder() -> None:
    """Each folder is loaded and applied as one set (`kubectl apply -f folder/` does not recurse)."""
    manifests = [p for p in EXAMPLES.rglob("*") if p.suffix in (".yaml", ".yml", ".json")]
    assert manifests
    misplaced = [p for p in manifests if p.parent.parent != EXAMPLES or p.suffix != ".yaml"]
    assert not misplaced, f"put these as .yaml files directly in a folder of examples/: {misplaced}"


@pytest.mark.parametrize("path", STANDALONE, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_standalone_examples_carry_their_secrets_as_placeholders(path: Path) -> None:
    manifests = load_manifests([path])
    assert len(manifests.sources) == 1 and manifests.mappings
    own = {name: data for (_, name), data in manifests.secrets.items()}
    # The sink examples read the API token of the quickstart, whose demo API they sync.
    shared = {name: data for (_, name), data in load_manifests([QUICKSTART]).secrets.items()}
    (source,) = manifests.sources.values()
    refs = referenced_secrets(source.spec)
    assert refs, "every real-world example authenticates"
    for name, key in refs:
        data = own.get(name) if name in own else shared.get(name)
        assert data is not None and key in data, f"{path.name}: Secret {name} with key {key} is not given"
    for name, data in own.items():
        for key, value in data.items():
            assert PLACEHOLDER in value, f"{path.name}: Secret {name} key {key} must be a {PLACEHOLDER} placeholder"
        assert name in {n for n, _ in refs}, f"{path.name}: Secret {name} is not used"


def test_quickstart_source_calls_the_demo_api_service_it_ships() -> None:
    docs = {(d["kind"], d["metadata"]["name"]): d for d in docs_of(QUICKSTART)}
    assert {k for k, _ in docs} == {"Deployment", "Service", "Secret", "HttpSource", "HttpEndpointMapping"}
    dep, svc = docs[("Deployment", "demo-api")], docs[("Service", "demo-api")]
    source = HttpSource.model_validate(docs[("HttpSource", "demo-api")])
    url = urlsplit(source.spec.base_url)
    # The operator runs in its own namespace: the Service must be named with the namespace e2e-kind.sh applies to.
    assert url.hostname == f"{svc['metadata']['name']}.httpsync-quickstart.svc"
    assert "EXAMPLES_NAMESPACE:-httpsync-quickstart" in (REPO / "hack" / "e2e-kind.sh").read_text()
    (port,) = svc["spec"]["ports"]
    assert url.port == port["port"]
    pod = dep["spec"]["template"]
    assert all(pod["metadata"]["labels"].get(k) == v for k, v in svc["spec"]["selector"].items())
    (c,) = pod["spec"]["containers"]
    named = {p["name"]: p["containerPort"] for p in c["ports"]}
    assert named[port["targetPort"]] == demo.DEFAULT_PORT
    assert c["command"][:2] == ["httpsync", "demo-api"] and c["command"][2:4] == ["--host", "0.0.0.0"]
    assert c["readinessProbe"]["httpGet"]["path"] == "/healthz"
    chart = yaml.safe_load((REPO / "charts" / "httpsync-operator" / "Chart.yaml").read_text())
    values = yaml.safe_load((REPO / "charts" / "httpsync-operator" / "values.yaml").read_text())
    assert c["image"] == f"{values['image']['repository']}:{chart['appVersion']}", "the image the chart installs"
    secret = docs[("Secret", source.spec.auth.secret_ref.name)]
    assert secret["stringData"]["token"] == demo.TOKEN


# ---------------------------------------------------------------------------- the pagination examples, walked

ITEMS = 5  # per API, served two per page whatever size is asked for: three pages
SERVER_PAGE = 2


def _page(start: int) -> tuple[int, int]:
    return start, min(start + SERVER_PAGE, ITEMS)


class Emulator:
    """The four APIs of examples/pagination/, as far as their pagination, auth and item shapes go."""

    def __init__(self) -> None:
        self.url = ""
        self.log: list[tuple[str, dict[str, str]]] = []
        self.tokens_issued = 0

    def _auth(self, request: web.Request, expected: str) -> None:
        if request.headers.get("Authorization") != expected:
            raise web.HTTPUnauthorized(text='{"message": "Bad credentials"}', content_type="application/json")

    async def _record(self, request: web.Request) -> None:
        self.log.append((request.path, dict(request.query)))

    # GitHub: ?per_page&page, Link header with rel="next" (to another path, as GitHub does), a bare array.
    async def github(self, request: web.Request) -> web.Response:
        await self._record(request)
        self._auth(request, f"Bearer {PLACEHOLDER}")
        page = int(request.query.get("page", "1"))
        start, end = _page((page - 1) * SERVER_PAGE)
        repos = [
            {
                "full_name": f"kubernetes/repo{i}", "name": f"repo{i}", "html_url": f"https://github.com/k/repo{i}",
                "description": None, "language": "Go", "default_branch": "main", "visibility": "public",
                "stargazers_count": i, "topics": ["k8s"], "pushed_at": "2025-01-02T03:04:05Z",
                "archived": i == 1, "fork": i == 2,
            }
            for i in range(start, end)
        ]  # fmt: skip
        headers = {}
        if end < ITEMS:
            per_page = request.query["per_page"]
            headers["Link"] = (
                f'<{self.url}/organizations/13629408/repos?per_page={per_page}&page={page + 1}>; rel="next", '
                f'<{self.url}/organizations/13629408/repos?per_page={per_page}&page=3>; rel="last"'
            )
        return web.json_response(repos, headers=headers)

    # Stripe: ?limit&starting_after=<id>, {"data", "has_more"}.
    async def stripe(self, request: web.Request) -> web.Response:
        await self._record(request)
        self._auth(request, f"Bearer {PLACEHOLDER}")
        ids = [f"cus_{i}" for i in range(ITEMS)]
        after = request.query.get("starting_after")
        start, end = _page(ids.index(after) + 1 if after else 0)
        data = [
            {
                "id": ids[i], "object": "customer", "name": None if i == 0 else f"Customer {i}",
                "email": f"c{i}@example.com", "currency": "eur", "delinquent": False,
                "created": 1700000000 + i, "livemode": False,
            }
            for i in range(start, end)
        ]  # fmt: skip
        return web.json_response({"object": "list", "url": "/v1/customers", "data": data, "has_more": end < ITEMS})

    # Entra ID token endpoint (client credentials, form) and Graph: {"value", "@odata.nextLink"}.
    async def token(self, request: web.Request) -> web.Response:
        form = await request.post()
        expected = {
            "grant_type": "client_credentials",
            "client_id": PLACEHOLDER,
            "client_secret": PLACEHOLDER,
            "scope": "https://graph.microsoft.com/.default",
        }
        if {k: form.get(k) for k in expected} != expected:
            return web.json_response({"error": "invalid_client", "got": sorted(form)}, status=401)
        self.tokens_issued += 1
        return web.json_response({"token_type": "Bearer", "expires_in": 3599, "access_token": "graph-access-token"})

    async def graph(self, request: web.Request) -> web.Response:
        await self._record(request)
        self._auth(request, "Bearer graph-access-token")
        start, end = _page(int(request.query.get("$skiptoken", "0")))
        value = [
            {
                "id": f"0000-{i}", "displayName": f"User {i}", "mail": None if i == 0 else f"u{i}@example.com",
                "userPrincipalName": f"u{i}@example.onmicrosoft.com", "jobTitle": "Engineer",
                "department": "Platform", "accountEnabled": i != 4,
            }
            for i in range(start, end)
        ]  # fmt: skip
        body: dict[str, Any] = {"@odata.context": f"{self.url}/v1.0/$metadata#users", "value": value}
        if end < ITEMS:
            select, top = request.query["$select"], request.query["$top"]
            body["@odata.nextLink"] = f"{self.url}/v1.0/users?$select={select}&$top={top}&$skiptoken={end}"
        return web.json_response(body)

    # Jira: ?startAt&maxResults, {"startAt", "maxResults", "total", "isLast", "values"}; basic auth.
    async def jira(self, request: web.Request) -> web.Response:
        await self._record(request)
        basic = base64.b64encode(f"{PLACEHOLDER}@example.com:{PLACEHOLDER}".encode()).decode()
        self._auth(request, f"Basic {basic}")
        start, end = _page(int(request.query.get("startAt", "0")))
        values = [
            {
                "key": f"P{i}", "name": f"Project {i}", "projectTypeKey": "software", "description": "",
                "lead": {"emailAddress": f"lead{i}@example.com", "displayName": f"Lead {i}"},
            }
            for i in range(start, end)
        ]  # fmt: skip
        return web.json_response(
            {"startAt": start, "maxResults": SERVER_PAGE, "total": ITEMS, "isLast": end >= ITEMS, "values": values}
        )

    # Auth0: a client-credentials login (form) and the Management API's users, ?page (from 0) &per_page.
    async def auth0_token(self, request: web.Request) -> web.Response:
        form = dict(await request.post())
        expected = {
            "grant_type": "client_credentials",
            "client_id": PLACEHOLDER,
            "client_secret": PLACEHOLDER,
            "audience": f"https://{PLACEHOLDER}.eu.auth0.com/api/v2/",
        }
        if form != expected:
            return web.json_response({"error": "access_denied", "got": sorted(form)}, status=401)
        self.tokens_issued += 1
        return web.json_response({"access_token": "auth0-mgmt-token", "token_type": "Bearer", "expires_in": 86400})

    async def auth0_users(self, request: web.Request) -> web.Response:
        await self._record(request)
        self._auth(request, "Bearer auth0-mgmt-token")
        page, per_page = int(request.query["page"]), int(request.query["per_page"])
        users = [
            {
                "user_id": f"auth0|{i}", "email": f"u{i}@example.com", "name": None if i == 0 else f"User {i}",
                "logins_count": i, "last_login": "2025-01-02T03:04:05.000Z", "blocked": i == 4,
                "identities": [{"connection": "Username-Password-Authentication"}],
            }
            for i in range(ITEMS)
        ][page * per_page : (page + 1) * per_page]  # fmt: skip
        return web.json_response(users)

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/oauth/token", self.auth0_token)
        app.router.add_get("/api/v2/users", self.auth0_users)
        app.router.add_get("/orgs/kubernetes/repos", self.github)
        app.router.add_get("/organizations/13629408/repos", self.github)
        app.router.add_get("/v1/customers", self.stripe)
        app.router.add_post(f"/{PLACEHOLDER}_TENANT_ID/oauth2/v2.0/token", self.token)
        app.router.add_get("/v1.0/users", self.graph)
        app.router.add_get("/rest/api/3/project/search", self.jira)
        return app


@pytest.fixture
async def emulator() -> AsyncIterator[Emulator]:
    emu = Emulator()
    runner = web.AppRunner(emu.app(), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    emu.url = f"http://127.0.0.1:{runner.addresses[0][1]}"
    yield emu
    await runner.cleanup()


def _to(emulator_url: str, url: str) -> str:
    """``url`` on the emulator's host, path kept."""
    parts, target = urlsplit(url), urlsplit(emulator_url)
    return urlunsplit((target.scheme, target.netloc, parts.path, parts.query, ""))


async def _preview(manifests: Manifests, emulator_url: str) -> PreviewResult:
    (source,) = manifests.sources.values()
    source.spec.base_url = _to(emulator_url, source.spec.base_url)
    if source.spec.auth.token_url:
        source.spec.auth.token_url = _to(emulator_url, source.spec.auth.token_url)

    async def work(client: Any, m: Any) -> PreviewResult:
        return await preview_mapping(client, m.metadata.name, m.spec, pagination_of(manifests, m), limit=100)

    def failed(m: Any, e: EngineError) -> PreviewResult:
        return PreviewResult(failed_result(m.metadata.name, m.spec.kind, e))

    secrets = manifests.secrets_for(namespace_of(manifests.mappings[0]))
    (result,) = await run_source(source.spec, manifests.mappings, secrets, work, failed, concurrency=1)
    assert result.result.outcome == "Succeeded", (result.result.reason, result.result.message)
    assert result.errors == []
    assert (result.result.pages, result.result.items_fetched) == (3, ITEMS)
    return result


async def test_github_example_follows_the_link_header(emulator: Emulator) -> None:
    result = await _preview(load_manifests([EXAMPLES / "pagination" / "github-link-header.yaml"]), emulator.url)
    assert [e["identifier"] for e in result.entities] == ["kubernetes/repo0", "kubernetes/repo3", "kubernetes/repo4"]
    assert result.result.items_filtered == 2  # the archived repository and the fork
    assert result.entities[0]["properties"]["defaultBranch"] == "main"
    paths = [(p, q) for p, q in emulator.log]
    assert paths[0] == ("/orgs/kubernetes/repos", {"per_page": "100", "type": "all", "sort": "full_name"})
    assert [q.get("page") for _, q in paths[1:]] == ["2", "3"]  # the links, as given


async def test_stripe_example_pages_by_the_last_id(emulator: Emulator) -> None:
    result = await _preview(load_manifests([EXAMPLES / "pagination" / "stripe-cursor.yaml"]), emulator.url)
    assert [e["identifier"] for e in result.entities] == [f"cus_{i}" for i in range(ITEMS)]
    first = result.entities[0]
    assert first["title"] == "c0@example.com"  # no name: the email
    assert first["properties"]["created"] == "2023-11-14T22:13:20Z"
    assert [q for _, q in emulator.log] == [
        {"limit": "100"},
        {"limit": "100", "starting_after": "cus_1"},
        {"limit": "100", "starting_after": "cus_3"},
    ]


async def test_graph_example_gets_a_token_and_follows_odata_nextlink(emulator: Emulator) -> None:
    result = await _preview(load_manifests([EXAMPLES / "pagination" / "odata-nextlink.yaml"]), emulator.url)
    assert [e["identifier"] for e in result.entities] == [f"0000-{i}" for i in range(4)]  # user 4 is disabled
    assert result.entities[0]["properties"]["email"] == "u0@example.onmicrosoft.com"
    assert emulator.tokens_issued == 1
    first = emulator.log[0][1]
    assert first["$top"] == "100" and first["$select"].startswith("id,displayName")
    assert [q.get("$skiptoken") for _, q in emulator.log] == [None, "2", "4"]


async def test_auth0_example_logs_in_with_the_custom_flow(emulator: Emulator) -> None:
    manifests = load_manifests([EXAMPLES / "auth" / "auth0-custom-login.yaml"])
    (source,) = manifests.sources.values()
    source.spec.base_url = emulator.url

    async def work(client: Any, m: Any) -> PreviewResult:
        return await preview_mapping(client, m.metadata.name, m.spec, pagination_of(manifests, m), limit=100)

    def failed(m: Any, e: EngineError) -> PreviewResult:
        return PreviewResult(failed_result(m.metadata.name, m.spec.kind, e))

    secrets = manifests.secrets_for(namespace_of(manifests.mappings[0]))
    (result,) = await run_source(source.spec, manifests.mappings, secrets, work, failed, concurrency=1)
    assert result.result.outcome == "Succeeded", (result.result.reason, result.result.message)
    assert [e["identifier"] for e in result.entities] == [f"auth0|{i}" for i in range(4)]  # user 4 is blocked
    assert result.entities[0]["title"] == "u0@example.com"
    assert result.entities[1]["properties"]["connection"] == "Username-Password-Authentication"
    assert emulator.tokens_issued == 1
    assert [q["page"] for _, q in emulator.log] == ["0"] and emulator.log[0][1]["per_page"] == "50"


async def test_jira_example_walks_offsets_up_to_the_total(emulator: Emulator) -> None:
    result = await _preview(load_manifests([EXAMPLES / "pagination" / "jira-offset-total.yaml"]), emulator.url)
    assert [e["identifier"] for e in result.entities] == [f"P{i}" for i in range(ITEMS)]
    assert result.entities[0]["properties"]["lead"] == "lead0@example.com"
    # The server returned 2 of the 50 asked for: offsets advance by what arrived.
    assert [(q["startAt"], q["maxResults"], q["expand"]) for _, q in emulator.log] == [
        ("0", "50", "lead,description"),
        ("2", "50", "lead,description"),
        ("4", "50", "lead,description"),
    ]


# ---------------------------------------------------------------------------- the real API server


@pytest.mark.cluster
@pytest.mark.parametrize("folder", FOLDERS, ids=lambda p: p.name)
def test_every_folder_passes_server_side_dry_run(kube: Any, folder: Path) -> None:
    """`kubectl apply --dry-run=server` of the folder as a user applies it: the real CRDs' schema and CEL rules."""
    ns = kube.new_namespace("ex")
    proc = kube.kubectl("apply", "--dry-run=server", "-n", ns, "-f", str(folder), check=False)
    assert proc.returncode == 0, proc.stderr
    for doc in docs_of(folder):
        kind, name = doc["kind"].lower(), doc["metadata"]["name"]
        group = doc["apiVersion"].split("/")[0] if "/" in doc["apiVersion"] else ""
        shown = f"{kind}.{group}/{name}" if group else f"{kind}/{name}"
        assert f"{shown} created (server dry run)" in proc.stdout, (shown, proc.stdout)
    assert not kube.get_json("httpsources,httpendpointmappings,secrets", "-n", ns)["items"], "a dry run creates nothing"


@pytest.fixture
def demo_api_process() -> Iterator[str]:
    """`httpsync demo-api` on a free loopback port, in a subprocess (as a user runs it)."""
    port = _free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "httpsync.cli", "demo-api", "--port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"

    def up() -> bool:
        assert proc.poll() is None, proc.stdout.read().decode() if proc.stdout else ""
        try:
            with urllib.request.urlopen(f"{url}/healthz", timeout=2) as r:
                return r.status == 200
        except OSError:
            return False

    try:
        wait_for(up, "the demo API", timeout=30)
        yield url
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.mark.cluster
def test_quickstart_gets_ready_under_the_operator(
    kube: Any, tmp_path: Path, demo_api_process: str, request: pytest.FixtureRequest
) -> None:
    ns = kube.new_namespace("quickstart")
    # No kubelet here: the demo API runs as a process and the source points at it instead of the Service.
    docs = [d for d in docs_of(QUICKSTART) if d["kind"] not in ("Deployment", "Service")]
    (source,) = [d for d in docs if d["kind"] == "HttpSource"]
    source["spec"]["baseUrl"] = demo_api_process
    op = ScopedOperator(kube, tmp_path, [ns])
    op.start()
    request.addfinalizer(op.stop)

    kube.kubectl("apply", "-n", ns, "-f", "-", input=yaml.safe_dump_all(docs))
    proc = kube.kubectl(
        "wait", "-n", ns, "--for=condition=Ready", "httpsource", "--all", "--timeout=60s", check=False, timeout=90
    )
    assert proc.returncode == 0, f"{proc.stderr}\n--- operator log ---\n{op.log()}"
    kube.kubectl("wait", "-n", ns, "--for=condition=Ready", "httpendpointmapping", "--all", "--timeout=30s")

    expected = {
        "users": sum(1 for u in demo.USERS if u["is_active"] and u["department"] == "engineering"),
        "projects": sum(1 for p in demo.PROJECTS if p["status"] == "active" and p["budget_amount"] > 0),
    }
    for name, count in expected.items():
        hem = get(kube, ns, f"hem/{name}")
        assert hem["status"]["entityCount"] == count, hem["status"]
        assert hem["status"]["lastSync"]["pages"] == count // 25 + 1  # pages of 25, up to a short (or empty) one
    src = get(kube, ns, "hsrc/demo-api")
    ready = condition(src, "Ready")
    assert src["status"]["endpoints"] == "2/2"
    assert ready["reason"] == "Succeeded" and f"{sum(expected.values())} entities" in ready["message"]
    entities = op.catalog_list()
    by_blueprint = {b: sum(1 for e in entities if e["blueprint"] == b) for b in ("user", "project")}
    assert by_blueprint == {"user": expected["users"], "project": expected["projects"]}
    out = kube.kubectl("get", "-n", ns, "httpsync").stdout  # the category: sources and mappings at once
    assert "httpsource.httpsync.io/demo-api" in out and "httpendpointmapping.httpsync.io/users" in out
