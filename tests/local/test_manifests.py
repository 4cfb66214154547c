"""Loading manifests for the local CLI: documents, Secrets, messages naming file, object and field."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest

from httpsync.cli.manifests import LocalSecrets, ManifestError, load_manifests
from httpsync.errors import SecretError
from httpsync.http.redact import redact

SOURCE = """
apiVersion: httpsync.io/v1alpha1
kind: HttpSource
metadata: {name: api}
spec:
  baseUrl: https://api.example.com
  auth: {type: bearer, secretRef: {name: creds}}
"""
MAPPING = """
apiVersion: httpsync.io/v1alpha1
kind: HttpEndpointMapping
metadata: {name: users}
spec:
  sourceRef: {name: api}
  kind: /users
  mappings: {identifier: .id, blueprint: '"user"'}
"""


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def problems(paths: list[Path]) -> list[str]:
    with pytest.raises(ManifestError) as exc:
        load_manifests(paths)
    return exc.value.problems


def test_multi_document_files_and_directories(tmp_path: Path) -> None:
    write(tmp_path, "all.yaml", SOURCE + "---\n" + MAPPING + "---\n")
    write(tmp_path, "sub/more.yml", MAPPING.replace("name: users", "name: users2"))
    write(tmp_path, ".hidden/skip.yaml", "not: [valid")
    write(tmp_path, "notes.txt", "ignored")
    m = load_manifests([tmp_path])
    assert list(m.sources) == [("default", "api")]
    assert [x.metadata.name for x in m.mappings] == ["users", "users2"]
    assert m.source_of(m.mappings[0]).spec.base_url == "https://api.example.com"
    assert m.where(m.mappings[1]) == f"{tmp_path / 'sub/more.yml'}: HttpEndpointMapping users2"


def test_json_arrays_and_lists(tmp_path: Path) -> None:
    import yaml

    docs = [yaml.safe_load(SOURCE), {"kind": "List", "items": [yaml.safe_load(MAPPING)]}]
    m = load_manifests([write(tmp_path, "x.json", json.dumps(docs))])
    assert len(m.sources) == 1 and len(m.mappings) == 1


async def test_secrets_from_string_data_and_base64_data(tmp_path: Path) -> None:
    encoded = base64.b64encode(b"from-data-value").decode()
    write(
        tmp_path,
        "s.yaml",
        f"""
apiVersion: v1
kind: Secret
metadata: {{name: creds}}
data: {{token: {encoded}, other: {encoded}}}
stringData: {{other: string-data-wins}}
""",
    )
    m = load_manifests([tmp_path])
    secrets = m.secrets_for("default")
    assert await secrets.get("creds", "token") == "from-data-value"
    assert await secrets.get("creds", "other") == "string-data-wins"
    assert redact("x string-data-wins y") == "x *** y"  # registered for redaction on load
    with pytest.raises(SecretError, match=r"^Secret creds has no key password$"):
        await secrets.get("creds", "password")
    with pytest.raises(SecretError, match=r"^Secret nope not found"):
        await secrets.get("nope", "token")
    with pytest.raises(SecretError):  # Secrets are per namespace
        await m.secrets_for("elsewhere").get("creds", "token")


async def test_local_secrets_errors_never_carry_values() -> None:
    secrets = LocalSecrets({"company-api-creds": {"user": "someone-secret-value"}})
    with pytest.raises(SecretError) as exc:
        await secrets.get("company-api-creds", "token")
    assert str(exc.value) == "Secret company-api-creds has no key token"


def test_validation_errors_name_file_object_and_field(tmp_path: Path) -> None:
    bad = MAPPING.replace("kind: /users", "kind: /users\n  selector: {dataPth: .users}")
    bad = bad.replace("mappings: {identifier: .id, blueprint: '\"user\"'}", "mappings: {identifier: .id}")
    path = write(tmp_path, "x.yaml", SOURCE + "---\n" + bad)
    assert problems([path]) == [
        f"{path}: HttpEndpointMapping users: spec.selector.dataPth: unknown field",
        f"{path}: HttpEndpointMapping users: spec.mappings.blueprint: required field missing",
    ]


def test_other_problems(tmp_path: Path) -> None:
    dup = write(tmp_path, "dup.yaml", SOURCE + "---\n" + SOURCE)
    orphan = write(tmp_path, "orphan.yaml", MAPPING.replace("name: api", "name: missing"))
    version = write(
        tmp_path, "v.yaml", SOURCE.replace("httpsync.io/v1alpha1", "httpsync.io/v1").replace("api}", "api2}")
    )
    junk = write(tmp_path, "junk.yaml", "- 1\n- just a list\n")
    secret = write(tmp_path, "s.yaml", "apiVersion: v1\nkind: Secret\nmetadata: {name: s}\ndata: {k: '%%%'}\n")
    broken = write(tmp_path, "broken.yaml", "a: [1,")
    found = problems([dup, orphan, version, junk, secret, broken, tmp_path / "absent"])
    assert found[0] == f"{tmp_path / 'absent'}: no such file or directory"
    assert f"{dup}: HttpSource api is defined twice (also in {dup})" in found
    assert any(
        p.startswith(f"{orphan}: HttpEndpointMapping users: spec.sourceRef.name: no HttpSource missing") for p in found
    )
    assert f"{version}: HttpSource api2: apiVersion: must be httpsync.io/v1alpha1" in found
    assert f"{junk}: document 1 is not an object" in found
    assert f"{secret}: Secret s: data.k: not valid base64-encoded UTF-8 text" in found
    assert any(p.startswith(f"{broken}: invalid YAML") for p in found)


def test_other_kinds_are_noted_and_namespaces_kept_apart(tmp_path: Path) -> None:
    other_ns = MAPPING.replace("metadata: {name: users}", "metadata: {name: users, namespace: team-b}")
    path = write(
        tmp_path, "x.yaml", SOURCE + "---\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: cm}\n---\n" + other_ns
    )
    found = problems([path])
    assert found == [
        f"{path}: HttpEndpointMapping users: spec.sourceRef.name: "
        "no HttpSource api in namespace team-b in the files given"
    ]
    m = load_manifests(
        [write(tmp_path, "ok.yaml", SOURCE + "---\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: cm}\n")]
    )
    assert m.notes == [
        f"{tmp_path / 'ok.yaml'}: ignoring ConfigMap cm (httpsync reads HttpSource, HttpEndpointMapping and Secret)"
    ]
