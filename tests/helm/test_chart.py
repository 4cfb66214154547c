"""The Helm chart (charts/httpsync-operator): lint, render, schema, security, RBAC, CRD copies, and the
rendered manifests against a real kube-apiserver.

helm v3.19.0 is built from Go modules with the control plane (``build_binaries()``; in cluster tests
``kube.bin_dir / "helm"``). ``helm template`` assumes Kubernetes v1.20 without a cluster, so every render
passes ``--kube-version``.
"""

from __future__ import annotations

import json
import re
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from httpsync.devcluster.cluster import ControlPlaneError, build_binaries
from tests.helm import chartcrds

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "charts" / "httpsync-operator"
KUBE_VERSION = "1.34.4"
RELEASE = "hs"

# Value sets rendered and linted; "namespaced" gets real namespaces in the cluster test.
VALUE_SETS: dict[str, dict[str, Any]] = {
    "default": {},
    "namespaced": {"watchNamespaces": ["team-a", "team-b"]},
    "port-sink": {"defaultSink": {"type": "port", "port": {"existingSecret": "port-credentials"}}},
    "webhook-sink": {
        "defaultSink": {
            "type": "webhook",
            "webhook": {
                "url": "https://hooks.example.com/catalog",
                "existingSecret": "webhook",
                "existingSecretKey": "k",
            },
        }
    },
    "servicemonitor": {"serviceMonitor": {"enabled": True, "labels": {"release": "kube-prometheus-stack"}}},
    "crds-disabled": {"crds": {"enabled": False}},
    "sharded": {"shards": ["a", "b"], "persistence": {"enabled": True}, "pdb": {"enabled": True}},
    "monitoring": {
        "serviceMonitor": {"enabled": True},
        "prometheusRule": {"enabled": True, "labels": {"release": "kube-prometheus-stack"}},
        "grafanaDashboard": {"enabled": True, "annotations": {"grafana_folder": "httpsync"}},
    },
    "everything": {
        "image": {"repository": "registry.example.com/httpsync", "tag": "1.2.3", "pullSecrets": ["regcred"]},
        "persistence": {"enabled": True, "storageClass": "fast", "size": "5Gi"},
        "destinationPolicy": {"allow": ["api.example.com", "10.20.0.0/16"], "deny": ["169.254.169.254/32"]},
        "metrics": {"enabled": True, "port": 9090},
        "service": {"port": 9090},
        "health": {"port": 9091},
        "verbose": True,
        "pdb": {"enabled": True},
        "extraEnv": [{"name": "HTTPSYNC_EXTRA", "value": "1"}],
        "podAnnotations": {"example.com/a": "b"},
        "podLabels": {"team": "platform"},
        "priorityClassName": "system-cluster-critical",
        "nodeSelector": {"kubernetes.io/os": "linux"},
        "tolerations": [{"key": "dedicated", "operator": "Equal", "value": "ops", "effect": "NoSchedule"}],
        "affinity": {
            "nodeAffinity": {
                "requiredDuringSchedulingIgnoredDuringExecution": {
                    "nodeSelectorTerms": [
                        {"matchExpressions": [{"key": "kubernetes.io/arch", "operator": "In", "values": ["amd64"]}]}
                    ]
                }
            }
        },
        "serviceAccount": {"annotations": {"eks.amazonaws.com/role-arn": "arn:aws:iam::1:role/x"}},
        "crds": {"keep": False},
    },
}
MONITORING = ["--api-versions", "monitoring.coreos.com/v1"]
DATA_DIR = "/var/lib/httpsync"
DATA_ENV = {"HTTPSYNC_CATALOG": f"{DATA_DIR}/catalog.db", "HTTPSYNC_STATE": f"{DATA_DIR}/state.db"}

# Least privilege, per (apiGroup, resource): what the operator does in a namespace it watches ...
EXPECTED_NAMESPACED: dict[tuple[str, str], set[str]] = {
    ("httpsync.io", "httpsources"): {"get", "list", "watch", "patch"},
    ("httpsync.io", "httpendpointmappings"): {"get", "list", "watch", "patch"},
    ("httpsync.io", "httpsources/status"): {"patch"},
    ("httpsync.io", "httpendpointmappings/status"): {"patch"},
    ("", "events"): {"create", "patch"},
    ("", "secrets"): {"get"},
}
# No ConfigMaps at all: the sync state lives on the operator's data volume, not in the cluster.
# ... and the cluster-scoped reads kopf needs in both modes (with a list of namespaces, kopf lists and watches
# namespaces to match it: test_rbac_proof.py).
EXPECTED_CLUSTER_READS: dict[tuple[str, str], set[str]] = {
    ("apiextensions.k8s.io", "customresourcedefinitions"): {"get", "list", "watch"},
    ("", "namespaces"): {"list", "watch"},
}
EXPECTED_ALL_NAMESPACES = {**EXPECTED_NAMESPACED, **EXPECTED_CLUSTER_READS}

CLUSTER_SCOPED = {"CustomResourceDefinition", "ClusterRole", "ClusterRoleBinding"}


# ---------------------------------------------------------------------------- helpers


@pytest.fixture(scope="session")
def helm_bin() -> Path:
    try:
        binary = build_binaries(quiet=True) / "helm"
    except ControlPlaneError as e:
        pytest.fail(f"helm is built with the control plane and could not be had: {e}", pytrace=False)
    if not binary.exists():
        pytest.fail(
            f"{binary} is missing: run `bash operator/httpsync/devcluster/build-control-plane.sh`", pytrace=False
        )
    return binary


def run_helm(
    helm: Path, *args: str, check: bool = True, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run([str(helm), *args], capture_output=True, text=True, timeout=60, env=env)
    if check and proc.returncode != 0:
        raise AssertionError(f"helm {' '.join(args)} failed ({proc.returncode}):\n{proc.stderr}\n{proc.stdout}")
    return proc


def values_file(tmp_path: Path, values: dict[str, Any], name: str = "values.yaml") -> str:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(values))
    return str(path)


def template(
    helm: Path,
    tmp_path: Path,
    values: dict[str, Any] | None = None,
    *extra: str,
    namespace: str = "httpsync-system",
    release: str = RELEASE,
    check: bool = True,
) -> list[dict[str, Any]] | subprocess.CompletedProcess[str]:
    args = ["template", release, str(CHART), "--namespace", namespace, "--kube-version", KUBE_VERSION]
    if values:
        args += ["-f", values_file(tmp_path, values)]
    proc = run_helm(helm, *args, *extra, check=check)
    if not check:
        return proc
    return [d for d in yaml.safe_load_all(proc.stdout) if d]


def render(helm: Path, tmp_path: Path, values: dict[str, Any] | None = None, *extra: str, **kw: Any) -> list[dict]:
    docs = template(helm, tmp_path, values, *extra, **kw)
    assert isinstance(docs, list)
    return docs


def of_kind(docs: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [d for d in docs if d["kind"] == kind]


def one(docs: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    found = of_kind(docs, kind)
    assert len(found) == 1, f"expected one {kind}, got {len(found)}"
    return found[0]


def rules_table(rules: list[dict[str, Any]]) -> dict[tuple[str, str], set[str]]:
    table: dict[tuple[str, str], set[str]] = {}
    for rule in rules:
        assert set(rule) <= {"apiGroups", "resources", "verbs"}, f"unexpected rule keys: {rule}"
        for field in ("apiGroups", "resources", "verbs"):
            assert "*" not in rule[field], f"wildcard in {field}: {rule}"
        for group in rule["apiGroups"]:
            for resource in rule["resources"]:
                table.setdefault((group, resource), set()).update(rule["verbs"])
    return table


def container(docs: list[dict[str, Any]]) -> dict[str, Any]:
    containers = one(docs, "Deployment")["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    return containers[0]


def env_of(c: dict[str, Any]) -> dict[str, Any]:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in c.get("env", [])}


# ---------------------------------------------------------------------------- lint and render


@pytest.mark.parametrize("name", list(VALUE_SETS))
def test_lint_strict(helm_bin: Path, tmp_path: Path, name: str) -> None:
    args = ["lint", "--strict", str(CHART), "--kube-version", KUBE_VERSION, "--namespace", "httpsync-system"]
    if VALUE_SETS[name]:
        args += ["-f", values_file(tmp_path, VALUE_SETS[name])]
    # helm lint has no --api-versions: the ServiceMonitor itself is linted by the template tests.
    proc = run_helm(helm_bin, *args)
    assert "1 chart(s) linted, 0 chart(s) failed" in proc.stdout
    assert "[WARNING]" not in proc.stdout and "[ERROR]" not in proc.stdout, proc.stdout


@pytest.mark.parametrize("name", list(VALUE_SETS))
def test_every_object_is_labelled_and_placed(helm_bin: Path, tmp_path: Path, name: str) -> None:
    docs = render(helm_bin, tmp_path, VALUE_SETS[name], *MONITORING)
    assert docs
    for d in docs:
        meta = d["metadata"]
        labels = meta.get("labels", {})
        assert labels.get("app.kubernetes.io/instance") == RELEASE, f"{d['kind']} {meta['name']}"
        assert labels.get("app.kubernetes.io/managed-by") == "Helm"
        assert len(meta["name"]) <= 63 or d["kind"] == "CustomResourceDefinition"
        if d["kind"] in CLUSTER_SCOPED:
            assert "namespace" not in meta
        else:
            assert meta.get("namespace"), f"{d['kind']} {meta['name']} has no namespace"


def test_default_render(helm_bin: Path, tmp_path: Path) -> None:
    docs = render(helm_bin, tmp_path)
    kinds = sorted(d["kind"] for d in docs)
    assert kinds == sorted(
        [
            "ClusterRole",
            "ClusterRoleBinding",
            "CustomResourceDefinition",
            "CustomResourceDefinition",
            "Deployment",
            "Service",
            "ServiceAccount",
        ]
    )
    dep = one(docs, "Deployment")
    assert dep["spec"]["replicas"] == 1
    assert dep["spec"]["strategy"] == {"type": "Recreate"}
    c = container(docs)
    assert c["image"] == "ghcr.io/httpsync/httpsync:0.1.0"  # tag defaults to appVersion
    assert c["args"] == ["--all-namespaces", "--metrics-port=8080", "--health-port=8081"]
    assert "command" not in c  # the image's entrypoint, httpsync run
    assert env_of(c) == {**DATA_ENV, "HTTPSYNC_DEFAULT_SINK": "catalog"}
    assert c["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "health"}
    ports = {p["name"]: p["containerPort"] for p in c["ports"]}
    assert ports == {"metrics": 8080, "health": 8081}
    assert c["resources"]["requests"] and c["resources"]["limits"]["memory"]
    sa = one(docs, "ServiceAccount")
    assert dep["spec"]["template"]["spec"]["serviceAccountName"] == sa["metadata"]["name"]
    svc = one(docs, "Service")
    assert svc["spec"]["ports"] == [{"name": "metrics", "port": 8080, "targetPort": "metrics", "protocol": "TCP"}]
    pod_labels = dep["spec"]["template"]["metadata"]["labels"]
    assert all(pod_labels.get(k) == v for k, v in svc["spec"]["selector"].items())


def test_restricted_pod_security(helm_bin: Path, tmp_path: Path) -> None:
    docs = render(helm_bin, tmp_path)
    pod = one(docs, "Deployment")["spec"]["template"]["spec"]
    psc = pod["securityContext"]
    assert psc["runAsNonRoot"] is True and psc["runAsUser"] == 10001
    assert psc["seccompProfile"] == {"type": "RuntimeDefault"}
    sc = container(docs)["securityContext"]
    assert sc["runAsNonRoot"] is True and sc["runAsUser"] == 10001
    assert sc["allowPrivilegeEscalation"] is False
    assert sc["capabilities"] == {"drop": ["ALL"]}
    assert sc["seccompProfile"] == {"type": "RuntimeDefault"}
    assert sc["readOnlyRootFilesystem"] is True
    assert not sc.get("privileged")
    # The only writable paths: /tmp and the data folder (catalog and sync state), emptyDirs by default.
    mounts = {m["mountPath"]: m["name"] for m in container(docs)["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert set(mounts) == {"/tmp", DATA_DIR}
    assert volumes[mounts["/tmp"]]["emptyDir"] == {"sizeLimit": "1Gi"}
    assert volumes[mounts[DATA_DIR]]["emptyDir"] == {"sizeLimit": "1Gi"}
    assert not any(k in pod for k in ("hostNetwork", "hostPID", "hostIPC"))
    assert all("hostPath" not in v for v in pod["volumes"])


def test_namespaced_mode(helm_bin: Path, tmp_path: Path) -> None:
    docs = render(helm_bin, tmp_path, VALUE_SETS["namespaced"])
    c = container(docs)
    assert c["args"][:2] == ["--namespace=team-a", "--namespace=team-b"]
    assert "--all-namespaces" not in c["args"]
    roles = of_kind(docs, "Role")
    assert sorted(r["metadata"]["namespace"] for r in roles) == ["team-a", "team-b"]
    for role in roles:
        assert rules_table(role["rules"]) == EXPECTED_NAMESPACED
    bindings = of_kind(docs, "RoleBinding")
    assert sorted(b["metadata"]["namespace"] for b in bindings) == ["team-a", "team-b"]
    sa = one(docs, "ServiceAccount")["metadata"]
    for b in [*bindings, one(docs, "ClusterRoleBinding")]:
        assert b["subjects"] == [{"kind": "ServiceAccount", "name": sa["name"], "namespace": sa["namespace"]}]
    for b in bindings:
        assert b["roleRef"] == {
            "apiGroup": "rbac.authorization.k8s.io",
            "kind": "Role",
            "name": roles[0]["metadata"]["name"],
        }
    # Cluster-wide: only the reads kopf needs (CRDs, namespaces), nothing namespaced.
    assert rules_table(one(docs, "ClusterRole")["rules"]) == EXPECTED_CLUSTER_READS


def test_all_namespaces_rbac(helm_bin: Path, tmp_path: Path) -> None:
    docs = render(helm_bin, tmp_path)
    assert not of_kind(docs, "Role") and not of_kind(docs, "RoleBinding")
    assert rules_table(one(docs, "ClusterRole")["rules"]) == EXPECTED_ALL_NAMESPACES
    crb = one(docs, "ClusterRoleBinding")
    assert crb["roleRef"]["name"] == one(docs, "ClusterRole")["metadata"]["name"]


def test_rbac_and_service_account_can_be_left_out(helm_bin: Path, tmp_path: Path) -> None:
    docs = render(helm_bin, tmp_path, {"rbac": {"create": False}, "serviceAccount": {"create": False, "name": "mine"}})
    assert not {d["kind"] for d in docs} & {
        "ClusterRole",
        "ClusterRoleBinding",
        "Role",
        "RoleBinding",
        "ServiceAccount",
    }
    assert one(docs, "Deployment")["spec"]["template"]["spec"]["serviceAccountName"] == "mine"
    proc = template(helm_bin, tmp_path, {"serviceAccount": {"create": False}}, check=False)
    assert isinstance(proc, subprocess.CompletedProcess) and proc.returncode != 0
    assert "serviceAccount.name is required" in proc.stderr


def test_port_sink(helm_bin: Path, tmp_path: Path) -> None:
    env = env_of(container(render(helm_bin, tmp_path, VALUE_SETS["port-sink"])))
    assert env == {
        **DATA_ENV,
        "HTTPSYNC_DEFAULT_SINK": "port",
        "HTTPSYNC_PORT_BASE_URL": "https://api.getport.io",
        "HTTPSYNC_PORT_CLIENT_ID": {"secretKeyRef": {"name": "port-credentials", "key": "clientId"}},
        "HTTPSYNC_PORT_CLIENT_SECRET": {"secretKeyRef": {"name": "port-credentials", "key": "clientSecret"}},
        "HTTPSYNC_PORT_CREATE_MISSING_RELATED_ENTITIES": "true",
        "HTTPSYNC_PORT_DELETE_DEPENDENTS": "false",
        "HTTPSYNC_PORT_RECONCILE_DRIFT": "true",
    }


def test_webhook_sink(helm_bin: Path, tmp_path: Path) -> None:
    env = env_of(container(render(helm_bin, tmp_path, VALUE_SETS["webhook-sink"])))
    assert env == {
        **DATA_ENV,
        "HTTPSYNC_DEFAULT_SINK": "webhook",
        "HTTPSYNC_WEBHOOK_URL": "https://hooks.example.com/catalog",
        "HTTPSYNC_WEBHOOK_SECRET": {"secretKeyRef": {"name": "webhook", "key": "k"}},
    }


def test_everything_set(helm_bin: Path, tmp_path: Path) -> None:
    docs = render(helm_bin, tmp_path, VALUE_SETS["everything"])
    pod = one(docs, "Deployment")["spec"]["template"]
    spec = pod["spec"]
    c = container(docs)
    assert c["image"] == "registry.example.com/httpsync:1.2.3"
    assert spec["imagePullSecrets"] == [{"name": "regcred"}]
    assert c["args"] == [
        "--all-namespaces",
        "--metrics-port=9090",
        "--health-port=9091",
        "--allow-destination=api.example.com",
        "--allow-destination=10.20.0.0/16",
        "--deny-destination=169.254.169.254/32",
    ]
    assert c["command"] == ["httpsync", "-vv", "run"]
    assert env_of(c)["HTTPSYNC_EXTRA"] == "1"
    assert {m["mountPath"] for m in c["volumeMounts"]} == {"/tmp", DATA_DIR}
    pvc = one(docs, "PersistentVolumeClaim")
    claim = next(v for v in spec["volumes"] if "persistentVolumeClaim" in v)["persistentVolumeClaim"]["claimName"]
    assert claim == pvc["metadata"]["name"]
    assert pvc["spec"]["accessModes"] == ["ReadWriteOnce"]
    assert pvc["spec"]["storageClassName"] == "fast"
    assert pvc["spec"]["resources"]["requests"]["storage"] == "5Gi"
    assert one(docs, "PodDisruptionBudget")["spec"]["minAvailable"] == 1
    assert pod["metadata"]["annotations"] == {"example.com/a": "b"}
    assert pod["metadata"]["labels"]["team"] == "platform"
    assert spec["priorityClassName"] == "system-cluster-critical"
    assert spec["nodeSelector"] == {"kubernetes.io/os": "linux"}
    assert spec["tolerations"][0]["key"] == "dedicated"
    assert "nodeAffinity" in spec["affinity"]
    assert {p["name"]: p["containerPort"] for p in c["ports"]} == {"metrics": 9090, "health": 9091}
    assert one(docs, "ServiceAccount")["metadata"]["annotations"]
    for crd in of_kind(docs, "CustomResourceDefinition"):
        assert "helm.sh/resource-policy" not in crd["metadata"].get("annotations", {})


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("default", {"namespaces": [], "metrics_port": 8080, "health_port": 8081}),
        ("namespaced", {"namespaces": ["team-a", "team-b"]}),
        (
            "everything",
            {
                "metrics_port": 9090,
                "health_port": 9091,
                "destination_allow": ["api.example.com", "10.20.0.0/16"],
                "destination_deny": ["169.254.169.254/32"],
            },
        ),
    ],
)
def test_command_line_is_understood_by_httpsync(
    helm_bin: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str, expected: dict[str, Any]
) -> None:
    """The rendered command line and environment, read by the real `httpsync` parser into the operator's
    configuration."""
    from httpsync.cli.main import build_parser
    from httpsync.controller.run import config_from_args

    for var in ("HTTPSYNC_NAMESPACES", "HTTPSYNC_DESTINATION_ALLOW", "HTTPSYNC_DESTINATION_DENY", *DATA_ENV):
        monkeypatch.delenv(var, raising=False)
    c = container(render(helm_bin, tmp_path, VALUE_SETS[name]))
    for var, value in env_of(c).items():
        if isinstance(value, str):  # not the secretKeyRefs
            monkeypatch.setenv(var, value)
    entrypoint = c.get("command", ["httpsync", "run"])  # the image's ENTRYPOINT unless the chart replaces it
    assert entrypoint[0] == "httpsync"
    args = build_parser().parse_args([*entrypoint[1:], *c["args"]])
    assert args.command == "run"
    cfg = config_from_args(args)
    assert str(cfg.catalog_path) == DATA_ENV["HTTPSYNC_CATALOG"]
    assert str(cfg.state_path) == DATA_ENV["HTTPSYNC_STATE"]
    for key, value in expected.items():
        assert getattr(cfg, key) == value, key
    if name == "everything":
        assert args.verbose == 2


def _data_volume(docs: list[dict[str, Any]]) -> dict[str, Any]:
    """The volume mounted at the data folder (catalog and sync state)."""
    (mount,) = [m for m in container(docs)["volumeMounts"] if m["mountPath"] == DATA_DIR]
    (volume,) = [
        v for v in one(docs, "Deployment")["spec"]["template"]["spec"]["volumes"] if v["name"] == mount["name"]
    ]
    return volume


def test_data_volume_is_an_empty_dir_without_persistence(helm_bin: Path, tmp_path: Path) -> None:
    for name in ("default", "port-sink", "webhook-sink"):
        docs = render(helm_bin, tmp_path, VALUE_SETS[name])
        assert not of_kind(docs, "PersistentVolumeClaim")
        assert _data_volume(docs) == {"name": "data", "emptyDir": {"sizeLimit": "1Gi"}}
        assert one(docs, "Deployment")["spec"]["strategy"] == {"type": "Recreate"}
    docs = render(helm_bin, tmp_path, {"dataSizeLimit": ""})
    assert _data_volume(docs) == {"name": "data", "emptyDir": {}}


@pytest.mark.parametrize("sink", ["catalog", "port-sink", "webhook-sink"])
def test_persistence_puts_the_data_on_a_claim(helm_bin: Path, tmp_path: Path, sink: str) -> None:
    """One claim for the catalog and the remote sinks' state, whatever the default sink; Recreate, so a
    ReadWriteOnce claim is released by the old Pod before the new one mounts it."""
    values = json.loads(json.dumps(VALUE_SETS["default" if sink == "catalog" else sink]))
    values["persistence"] = {"enabled": True}
    docs = render(helm_bin, tmp_path, values)
    pvc = one(docs, "PersistentVolumeClaim")
    assert pvc["metadata"]["name"] == f"{RELEASE}-httpsync-operator-data"
    assert pvc["metadata"]["namespace"] == "httpsync-system"
    assert pvc["spec"]["accessModes"] == ["ReadWriteOnce"]
    assert pvc["spec"]["resources"] == {"requests": {"storage": "1Gi"}}
    assert "storageClassName" not in pvc["spec"]  # the cluster's default class
    assert _data_volume(docs) == {"name": "data", "persistentVolumeClaim": {"claimName": pvc["metadata"]["name"]}}
    dep = one(docs, "Deployment")["spec"]
    assert dep["replicas"] == 1 and dep["strategy"] == {"type": "Recreate"}
    env = env_of(container(docs))
    assert {k: env[k] for k in DATA_ENV} == DATA_ENV
    modes = render(helm_bin, tmp_path, {"persistence": {"enabled": True, "accessModes": ["ReadWriteOncePod"]}})
    assert one(modes, "PersistentVolumeClaim")["spec"]["accessModes"] == ["ReadWriteOncePod"]


def test_existing_claim_is_used_not_created(helm_bin: Path, tmp_path: Path) -> None:
    values = {"persistence": {"enabled": True, "existingClaim": "httpsync-data"}}
    docs = render(helm_bin, tmp_path, values)
    assert not of_kind(docs, "PersistentVolumeClaim")
    assert _data_volume(docs) == {"name": "data", "persistentVolumeClaim": {"claimName": "httpsync-data"}}
    assert one(docs, "Deployment")["spec"]["strategy"] == {"type": "Recreate"}


def test_metrics_off(helm_bin: Path, tmp_path: Path) -> None:
    docs = render(helm_bin, tmp_path, {"metrics": {"enabled": False}, "serviceMonitor": {"enabled": True}}, *MONITORING)
    assert not of_kind(docs, "Service") and not of_kind(docs, "ServiceMonitor")
    c = container(docs)
    assert "--metrics-port=0" in c["args"]
    assert [p["name"] for p in c["ports"]] == ["health"]


# ---------------------------------------------------------------------------- shards


def _matches(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    """A label selector (matchLabels, matchExpressions Exists/DoesNotExist/In) against labels."""
    if any(labels.get(k) != v for k, v in selector.get("matchLabels", {}).items()):
        return False
    for e in selector.get("matchExpressions", []):
        op, key = e["operator"], e["key"]
        assert op in ("Exists", "DoesNotExist", "In"), op
        if (op == "Exists" and key not in labels) or (op == "DoesNotExist" and key in labels):
            return False
        if op == "In" and labels.get(key) not in e["values"]:
            return False
    return True


def test_shards_deploy_one_operator_each_beside_the_unsharded_one(helm_bin: Path, tmp_path: Path) -> None:
    docs = render(helm_bin, tmp_path, VALUE_SETS["sharded"])
    deployments = {d["metadata"]["name"]: d for d in of_kind(docs, "Deployment")}
    base = f"{RELEASE}-httpsync-operator"
    assert set(deployments) == {base, f"{base}-a", f"{base}-b"}
    claims = {c["metadata"]["name"] for c in of_kind(docs, "PersistentVolumeClaim")}
    assert claims == {f"{base}-data", f"{base}-a-data", f"{base}-b-data"}
    pdbs = {p["metadata"]["name"]: p for p in of_kind(docs, "PodDisruptionBudget")}
    assert set(pdbs) == set(deployments)
    pods = {name: d["spec"]["template"]["metadata"]["labels"] for name, d in deployments.items()}
    for name, dep in deployments.items():
        shard = name.removeprefix(f"{base}-") if name != base else None
        c = dep["spec"]["template"]["spec"]["containers"][0]
        assert [a for a in c["args"] if a.startswith("--shard")] == ([f"--shard={shard}"] if shard else [])
        assert dep["metadata"]["labels"].get("sharding.httpsync.io/key") == shard
        assert dep["spec"]["replicas"] == 1 and dep["spec"]["strategy"] == {"type": "Recreate"}
        (volume,) = [v for v in dep["spec"]["template"]["spec"]["volumes"] if v["name"] == "data"]
        assert volume["persistentVolumeClaim"]["claimName"] == f"{name}-data"  # its own data volume
        selector = dep["spec"]["selector"]
        assert _matches(selector, pods[name])
        if shard:  # a shard's Deployment selects only its own Pods ...
            assert [n for n, labels in pods.items() if _matches(selector, labels)] == [name]
        # ... and so does every PodDisruptionBudget (the unsharded one leaves the shards' Pods out).
        assert [n for n, labels in pods.items() if _matches(pdbs[name]["spec"]["selector"], labels)] == [name]
    # The unsharded Deployment's selector is the one of a release without shards (immutable on upgrade).
    plain = one(render(helm_bin, tmp_path, {}), "Deployment")
    assert deployments[base]["spec"]["selector"] == plain["spec"]["selector"]
    assert deployments[base]["spec"]["template"]["metadata"] == plain["spec"]["template"]["metadata"]
    assert deployments[base]["metadata"] == plain["metadata"]
    # One metrics Service for all of them (the ServiceMonitor scrapes each Pod behind it).
    svc = one(docs, "Service")
    assert all(_matches({"matchLabels": svc["spec"]["selector"]}, labels) for labels in pods.values())


def test_shard_command_line_is_understood_by_httpsync(
    helm_bin: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from httpsync.cli.main import build_parser
    from httpsync.controller.run import config_from_args

    monkeypatch.delenv("HTTPSYNC_SHARD", raising=False)
    docs = render(helm_bin, tmp_path, {"shards": ["team-a"]})
    shards = {}
    for dep in of_kind(docs, "Deployment"):
        c = dep["spec"]["template"]["spec"]["containers"][0]
        shards[dep["metadata"]["name"]] = config_from_args(build_parser().parse_args(["run", *c["args"]])).shard
    assert shards == {f"{RELEASE}-httpsync-operator": None, f"{RELEASE}-httpsync-operator-team-a": "team-a"}


def test_shard_names_fit_in_object_names(helm_bin: Path, tmp_path: Path) -> None:
    shard = "s" * 30
    docs = render(helm_bin, tmp_path, {"shards": [shard], "persistence": {"enabled": True}}, release="r" * 53)
    deployments = [d["metadata"]["name"] for d in of_kind(docs, "Deployment")]
    claims = [d["metadata"]["name"] for d in of_kind(docs, "PersistentVolumeClaim")]
    assert len(set(deployments)) == 2 and len(set(claims)) == 2
    assert all(len(n) <= 63 for n in deployments), deployments  # a DNS label: Pod names and hostnames derive from it
    assert all(len(n) <= 253 for n in claims), claims  # a DNS subdomain
    assert deployments[1].endswith(f"-{shard}")


def test_existing_claim_is_the_unsharded_operators(helm_bin: Path, tmp_path: Path) -> None:
    values = {"shards": ["a"], "persistence": {"enabled": True, "existingClaim": "mine"}}
    docs = render(helm_bin, tmp_path, values)
    assert [c["metadata"]["name"] for c in of_kind(docs, "PersistentVolumeClaim")] == [
        f"{RELEASE}-httpsync-operator-a-data"
    ]
    claims = {
        d["metadata"]["name"]: [
            v["persistentVolumeClaim"]["claimName"]
            for v in d["spec"]["template"]["spec"]["volumes"]
            if v["name"] == "data"
        ]
        for d in of_kind(docs, "Deployment")
    }
    assert claims == {
        f"{RELEASE}-httpsync-operator": ["mine"],
        f"{RELEASE}-httpsync-operator-a": [f"{RELEASE}-httpsync-operator-a-data"],
    }


# ---------------------------------------------------------------------------- ServiceMonitor


def test_servicemonitor_needs_the_value_and_the_api(helm_bin: Path, tmp_path: Path) -> None:
    assert not of_kind(render(helm_bin, tmp_path, {}, *MONITORING), "ServiceMonitor")  # off by default
    assert not of_kind(render(helm_bin, tmp_path, VALUE_SETS["servicemonitor"]), "ServiceMonitor")  # no API
    docs = render(helm_bin, tmp_path, VALUE_SETS["servicemonitor"], *MONITORING)
    sm = one(docs, "ServiceMonitor")
    assert sm["apiVersion"] == "monitoring.coreos.com/v1"
    assert sm["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    svc = one(docs, "Service")
    assert all(svc["metadata"]["labels"].get(k) == v for k, v in sm["spec"]["selector"]["matchLabels"].items())
    assert sm["spec"]["namespaceSelector"] == {"matchNames": [svc["metadata"]["namespace"]]}
    assert [e["port"] for e in sm["spec"]["endpoints"]] == [p["name"] for p in svc["spec"]["ports"]]
    assert sm["spec"]["endpoints"][0]["path"] == "/metrics"


# ---------------------------------------------------------------------------- values.schema.json


@pytest.mark.parametrize(
    ("values", "error"),
    [
        ({"bogus": 1}, "additional properties 'bogus' not allowed"),
        ({"image": {"tg": "1.0"}}, "additional properties 'tg' not allowed"),
        ({"crds": {"enabled": "yes"}}, "got string, want boolean"),
        ({"watchNamespaces": "team-a"}, "got string, want array"),
        ({"metrics": {"port": 70000}}, "maximum"),
        ({"defaultSink": {"type": "s3"}}, "defaultSink/type"),
        ({"defaultSink": {"type": "port"}}, "existingSecret"),
        ({"defaultSink": {"type": "webhook"}}, "url"),
        ({"image": {"pullPolicy": "Sometimes"}}, "pullPolicy"),
        ({"watchNamespaces": ["Team_A"]}, "watchNamespaces/0"),
        ({"serviceMonitor": {"interval": "often"}}, "interval"),
        (
            {"defaultSink": {"catalog": {"persistence": {"enabled": True}}}},
            "additional properties 'catalog' not allowed",
        ),
        ({"persistence": {"accessModes": ["ReadOnlyMany"]}}, "accessModes"),
        ({"persistence": {"size": "lots"}}, "persistence/size"),
        ({"shards": ["Team_A"]}, "shards/0"),
        ({"shards": ["a", "a"]}, "shards"),
        ({"shards": "a"}, "got string, want array"),
        ({"prometheusRule": {"enabled": "yes"}}, "got string, want boolean"),
        ({"grafanaDashboard": {"labels": {"grafana_dashboard": 1}}}, "grafanaDashboard/labels"),
    ],
    ids=[
        "unknown-top-level-key",
        "unknown-nested-key",
        "wrong-type",
        "namespaces-not-a-list",
        "port-range",
        "sink-type",
        "port-sink-needs-secret",
        "webhook-sink-needs-url",
        "pull-policy",
        "namespace-name",
        "duration",
        "persistence-moved-out-of-defaultSink",
        "access-mode",
        "claim-size",
        "shard-name",
        "shard-twice",
        "shards-not-a-list",
        "prometheus-rule-flag",
        "dashboard-label-value",
    ],
)
def test_schema_rejects(helm_bin: Path, tmp_path: Path, values: dict[str, Any], error: str) -> None:
    proc = template(helm_bin, tmp_path, values, check=False)
    assert isinstance(proc, subprocess.CompletedProcess)
    assert proc.returncode != 0, f"accepted {values}"
    assert "values don't meet the specifications of the schema" in proc.stderr, proc.stderr
    assert error in proc.stderr, proc.stderr


def test_schema_is_strict_where_values_are_ours() -> None:
    schema = json.loads((CHART / "values.schema.json").read_text())
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    assert schema["additionalProperties"] is False
    assert set(values) <= set(schema["properties"])
    free_form = {"resources", "podSecurityContext", "securityContext", "affinity", "global"}
    for key, sub in schema["properties"].items():
        if sub.get("type") == "object" and "properties" in sub:
            assert sub.get("additionalProperties") is False, f"{key} accepts unknown keys"
        elif sub.get("type") == "object" and "additionalProperties" not in sub:
            assert key in free_form, f"{key} is an unchecked object"


def _leaf_keys(values: dict[str, Any], prefix: str = "") -> Iterator[str]:
    for key, value in values.items():
        path = f"{prefix}{key}"
        if isinstance(value, dict) and value and key not in ("resources", "podSecurityContext", "securityContext"):
            yield from _leaf_keys(value, path + ".")
        else:
            yield path


def test_docs_describe_every_value() -> None:
    doc = (REPO / "docs" / "helm.md").read_text()
    documented = set(re.findall(r"^\| `([^`]+)` \|", doc, re.MULTILINE))
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    missing = [k for k in _leaf_keys(values) if k not in documented]
    assert not missing, f"docs/helm.md does not describe: {missing}"
    unknown = [k for k in documented if not k.startswith(tuple(_leaf_keys(values)))]
    assert not unknown, f"docs/helm.md describes values that do not exist: {unknown}"


# ---------------------------------------------------------------------------- CRDs


def test_chart_crds_are_the_generated_crds() -> None:
    """templates/crds/*.yaml == crds/*.yaml inside the wrapper (regenerate: python -m tests.helm.chartcrds)."""
    want = chartcrds.expected()
    have = {p.name: p.read_text() for p in sorted(chartcrds.TARGET.glob("*.yaml"))}
    assert set(have) == set(want), "the chart's CRD files differ from crds/: run python -m tests.helm.chartcrds"
    for name, text in have.items():
        assert chartcrds.unwrap(name, text) == (REPO / "crds" / name).read_text(), name
        assert text == want[name], f"templates/crds/{name} is stale: run python -m tests.helm.chartcrds"


def test_wrapper_round_trips_and_refuses_template_syntax() -> None:
    text = "apiVersion: v1\nkind: X\nmetadata:\n  name: x\nspec: {}\n"
    assert chartcrds.unwrap("x.yaml", chartcrds.wrap("x.yaml", text)) == text
    with pytest.raises(chartcrds.WrapError):
        chartcrds.wrap("x.yaml", text.replace("spec: {}", "spec: {rule: '{{ x }}'}"))
    with pytest.raises(chartcrds.WrapError):
        chartcrds.unwrap("x.yaml", chartcrds.wrap("x.yaml", text).replace("keep", "delete"))


def _strip_chart_metadata(crd: dict[str, Any]) -> dict[str, Any]:
    crd = json.loads(json.dumps(crd))
    crd["metadata"].pop("labels", None)
    crd["metadata"].pop("annotations", None)
    return crd


def test_rendered_crds_equal_the_generated_ones(helm_bin: Path, tmp_path: Path) -> None:
    generated = {}
    for path in sorted((REPO / "crds").glob("*.yaml")):
        crd = yaml.safe_load(path.read_text())
        generated[crd["metadata"]["name"]] = crd
    docs = render(helm_bin, tmp_path)
    rendered = {d["metadata"]["name"]: d for d in of_kind(docs, "CustomResourceDefinition")}
    assert set(rendered) == set(generated)
    for name, crd in rendered.items():
        assert _strip_chart_metadata(crd) == generated[name]
        assert crd["metadata"]["annotations"] == {"helm.sh/resource-policy": "keep"}
    no_keep = of_kind(render(helm_bin, tmp_path, {"crds": {"keep": False}}), "CustomResourceDefinition")
    assert len(no_keep) == 2 and all("annotations" not in c["metadata"] for c in no_keep)
    assert not of_kind(render(helm_bin, tmp_path, VALUE_SETS["crds-disabled"]), "CustomResourceDefinition")


def test_argocd_health_check_is_packaged(helm_bin: Path, tmp_path: Path) -> None:
    """files/ is in the packaged chart (not .helmignore'd), where NOTES.txt points."""
    run_helm(helm_bin, "package", str(CHART), "--destination", str(tmp_path))
    import tarfile

    with tarfile.open(next(tmp_path.glob("httpsync-operator-*.tgz"))) as tar:
        names = tar.getnames()
    assert "httpsync-operator/files/argocd-health.lua" in names
    assert "httpsync-operator/values.schema.json" in names
    assert not [n for n in names if "/crds/" in n and "/templates/crds/" not in n]  # no top-level crds/ folder


# ---------------------------------------------------------------------------- real control plane


PROMETHEUS_OPERATOR_KINDS = ("ServiceMonitor", "PrometheusRule")


def _split_for_apply(docs: list[dict[str, Any]]) -> tuple[list[dict], list[dict], list[dict]]:
    crds = of_kind(docs, "CustomResourceDefinition")
    # No Prometheus Operator here: the ServiceMonitor and PrometheusRule are checked structurally (and the rules
    # by the Prometheus rules parser, test_monitoring.py) instead.
    monitors = [d for d in docs if d["kind"] in PROMETHEUS_OPERATOR_KINDS]
    rest = [d for d in docs if d["kind"] not in ("CustomResourceDefinition", *PROMETHEUS_OPERATOR_KINDS)]
    return crds, monitors, rest


def _dry_run(kube: Any, objects: list[dict[str, Any]]) -> str:
    manifest = yaml.safe_dump_all(objects)
    proc = kube.kubectl(
        "apply",
        "--server-side",
        "--dry-run=server",
        "--force-conflicts",
        "--field-manager=helm-chart-test",
        "-f",
        "-",
        input=manifest,
    )
    return proc.stdout


@pytest.mark.cluster
@pytest.mark.parametrize("name", list(VALUE_SETS))
def test_rendered_manifests_pass_server_dry_run(kube: Any, tmp_path: Path, name: str) -> None:
    helm = kube.bin_dir / "helm"
    release_ns = kube.new_namespace("helm")
    values = json.loads(json.dumps(VALUE_SETS[name]))
    if name == "namespaced":
        values["watchNamespaces"] = [kube.new_namespace("watch"), kube.new_namespace("watch")]
    docs = render(helm, tmp_path, values, *MONITORING, namespace=release_ns)
    crds, monitors, rest = _split_for_apply(docs)
    assert (name in ("servicemonitor", "monitoring")) == bool(monitors)
    out = _dry_run(kube, rest)
    for d in rest:
        assert f"{d['metadata']['name']} serverside-applied (server dry run)" in out, (d["kind"], out)
    if crds:  # identical to the CRDs the session applied from crds/, so this only proves they are accepted as is
        out = _dry_run(kube, crds)
        assert out.count("serverside-applied (server dry run)") == len(crds)


def _can(kube: Any, user_ns: str, sa: str, checks: list[tuple[str, str, str, str | None]]) -> list[bool]:
    """SubjectAccessReviews for the ServiceAccount, one kubectl call: (verb, group, resource, namespace)."""
    reviews = []
    for verb, group, resource, namespace in checks:
        resource, _, sub = resource.partition("/")
        attrs = {"verb": verb, "group": group, "resource": resource}
        if sub:
            attrs["subresource"] = sub
        if namespace:
            attrs["namespace"] = namespace
        reviews.append(
            {
                "apiVersion": "authorization.k8s.io/v1",
                "kind": "SubjectAccessReview",
                "spec": {
                    "user": f"system:serviceaccount:{user_ns}:{sa}",
                    "groups": ["system:serviceaccounts", f"system:serviceaccounts:{user_ns}", "system:authenticated"],
                    "resourceAttributes": attrs,
                },
            }
        )
    out = kube.kubectl(
        "create", "-o", "json", "-f", "-", input=json.dumps({"apiVersion": "v1", "kind": "List", "items": reviews})
    )
    # kubectl prints one JSON document per created object, in input order.
    items, text, decoder, pos = [], out.stdout, json.JSONDecoder(), 0
    while text[pos:].strip():
        pos += len(text[pos:]) - len(text[pos:].lstrip())
        item, pos = decoder.raw_decode(text, pos)
        items.append(item)
    assert len(items) == len(checks), out.stdout[:2000]
    return [bool(i["status"].get("allowed")) for i in items]


def _install_rbac(kube: Any, tmp_path: Path, values: dict[str, Any], release_ns: str) -> str:
    # ClusterRoles are cluster-scoped: one release name per namespace keeps tests apart.
    docs = render(kube.bin_dir / "helm", tmp_path, values, namespace=release_ns, release=release_ns)
    rbac = [
        d for d in docs if d["kind"] in ("ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding")
    ]
    kube.kubectl("apply", "--server-side", "--field-manager=helm-chart-test", "-f", "-", input=yaml.safe_dump_all(rbac))
    return one(docs, "ServiceAccount")["metadata"]["name"]


def _matrix(ns: str) -> list[tuple[tuple[str, str, str, str | None], bool]]:
    """(verb, group, resource, namespace) -> allowed, in a namespace the operator watches."""
    out = []
    for (group, resource), verbs in EXPECTED_NAMESPACED.items():
        for verb in ("get", "list", "watch", "create", "update", "patch", "delete", "deletecollection"):
            out.append(((verb, group, resource, ns), verb in verbs))
    # No ConfigMap permission of any kind: the sync state is on the data volume.
    for verb in ("get", "list", "watch", "create", "update", "patch", "delete", "deletecollection"):
        out.append(((verb, "", "configmaps", ns), False))
    out += [
        (("get", "", "pods", ns), False),
        (("create", "", "secrets", ns), False),
        (("get", "apps", "deployments", ns), False),
    ]
    return out


@pytest.mark.cluster
def test_rbac_grants_exactly_the_table_cluster_wide(kube: Any, tmp_path: Path) -> None:
    release_ns, other_ns = kube.new_namespace("rbac"), kube.new_namespace("any")
    sa = _install_rbac(kube, tmp_path, {}, release_ns)
    checks = [
        *_matrix(other_ns),
        (("list", "", "namespaces", None), True),
        (("watch", "", "namespaces", None), True),
        (("get", "", "namespaces", None), False),
        (("list", "apiextensions.k8s.io", "customresourcedefinitions", None), True),
        (("delete", "apiextensions.k8s.io", "customresourcedefinitions", None), False),
        (("list", "", "secrets", None), False),  # never lists Secrets, in no namespace
        (("list", "", "configmaps", None), False),  # no ConfigMaps, in no namespace
        (("create", "", "configmaps", None), False),
    ]
    deadline = time.monotonic() + 10  # the RBAC authorizer's informers lag the writes a little
    while True:
        got = _can(kube, release_ns, sa, [c for c, _ in checks])
        if got == [want for _, want in checks] or time.monotonic() > deadline:
            break
        time.sleep(0.3)
    wrong = [(c, want) for (c, want), g in zip(checks, got, strict=True) if g != want]
    assert not wrong, f"(check, expected) pairs the API server decided otherwise: {wrong}"


@pytest.mark.cluster
def test_rbac_grants_exactly_the_table_per_namespace(kube: Any, tmp_path: Path) -> None:
    release_ns = kube.new_namespace("rbac")
    watched = [kube.new_namespace("watch"), kube.new_namespace("watch")]
    unwatched = kube.new_namespace("other")
    sa = _install_rbac(kube, tmp_path, {"watchNamespaces": watched}, release_ns)
    checks = _matrix(watched[0]) + _matrix(watched[1])
    checks += [(c, False) for c, _ in _matrix(unwatched)]
    checks += [
        (("list", "", "namespaces", None), True),  # kopf matches its namespace list against them
        (("get", "", "namespaces", None), False),
        (("list", "apiextensions.k8s.io", "customresourcedefinitions", None), True),
        (("watch", "apiextensions.k8s.io", "customresourcedefinitions", None), True),
        (("list", "httpsync.io", "httpsources", None), False),  # no cluster-wide list of its own resources
    ]
    deadline = time.monotonic() + 10
    while True:
        got = _can(kube, release_ns, sa, [c for c, _ in checks])
        if got == [want for _, want in checks] or time.monotonic() > deadline:
            break
        time.sleep(0.3)
    wrong = [(c, want) for (c, want), g in zip(checks, got, strict=True) if g != want]
    assert not wrong, f"(check, expected) pairs the API server decided otherwise: {wrong}"


@pytest.mark.cluster
def test_notes_explain_status_and_uninstall_order(kube: Any) -> None:
    """NOTES.txt as `helm install --dry-run=server` prints it against the real API server."""
    release_ns = kube.new_namespace("notes")
    proc = run_helm(
        kube.bin_dir / "helm",
        "install",
        release_ns,  # a fresh release name: cluster-scoped objects of other tests' renders do not clash
        str(CHART),
        "--namespace",
        release_ns,
        "--dry-run=server",
        "--set",
        "crds.enabled=false",  # the CRDs exist and are not owned by a release
        env=kube.env,
    )
    notes = proc.stdout.split("NOTES:", 1)[1]
    assert "kubectl get httpsources,httpendpointmappings -A" in notes
    assert "httpsync.io/finalizer" in notes
    order = [
        notes.index(s) for s in ("delete httpendpointmappings", "delete httpsources", f"helm uninstall {release_ns}")
    ]
    assert order == sorted(order), "NOTES must list: mappings, then sources, then helm uninstall"
    assert "resource.customizations.health.httpsync.io_HttpSource" in notes
    assert "crds.enabled is false" in notes
    # The default data volume is an emptyDir: the notes say what that costs and how to keep it.
    assert "an emptyDir, lost when the Pod goes" in notes and "persistence.enabled=true" in notes
    assert f"helm uninstall {release_ns} -n {release_ns}" in notes
    assert "Sharded" not in notes
    sharded = run_helm(
        kube.bin_dir / "helm", "install", release_ns, str(CHART), "--namespace", release_ns, "--dry-run=server",
        "--set", "crds.enabled=false", "--set", "shards={a,b}", env=kube.env,
    ).stdout.split("NOTES:", 1)[1]  # fmt: skip
    assert (
        f"Sharded: Deployment {release_ns}-httpsync-operator syncs the resources without the label\n"
        f"sharding.httpsync.io/key; {release_ns}-httpsync-operator-a, {release_ns}-httpsync-operator-b those labelled "
        "with a, b."
    ) in sharded


@pytest.mark.cluster
def test_pod_passes_restricted_pod_security_admission(kube: Any, tmp_path: Path) -> None:
    """The operator Pod, created (server dry run) in a namespace that enforces the restricted Pod Security Standard."""
    ns = kube.new_namespace("psa")
    kube.kubectl("label", "namespace", ns, "pod-security.kubernetes.io/enforce=restricted")
    docs = render(kube.bin_dir / "helm", tmp_path, VALUE_SETS["everything"], namespace=ns)
    template_ = one(docs, "Deployment")["spec"]["template"]
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "operator", "namespace": ns, **template_["metadata"]},
        "spec": template_["spec"],
    }
    proc = kube.kubectl("create", "--dry-run=server", "-f", "-", input=json.dumps(pod), check=False)
    assert proc.returncode == 0, proc.stderr
    assert "violate" not in proc.stderr, proc.stderr
    # The same check refuses a Pod that is not restricted, so passing above means something.
    pod["spec"]["containers"][0]["securityContext"]["allowPrivilegeEscalation"] = True
    proc = kube.kubectl("create", "--dry-run=server", "-f", "-", input=json.dumps(pod), check=False)
    assert proc.returncode != 0 and 'violates PodSecurity "restricted' in proc.stderr, proc.stderr


def test_replicas_elect_a_leader(helm_bin: Path, tmp_path: Path) -> None:
    """replicaCount > 1: every replica runs `httpsync run --leader-elect` on a Lease of the release namespace,
    with the RBAC for it and a PodDisruptionBudget; the parsed command line asks for it."""
    from httpsync.cli.main import build_parser
    from httpsync.controller.run import config_from_args

    docs = render(helm_bin, tmp_path, {"replicaCount": 2, "defaultSink": {"type": "webhook", "webhook": {
        "url": "https://hooks.example.com/x"}}})  # fmt: skip
    deployment = one(docs, "Deployment")
    assert deployment["spec"]["replicas"] == 2 and deployment["spec"]["strategy"]["type"] == "RollingUpdate"
    c = container(docs)
    args = config_from_args(build_parser().parse_args(["run", *c["args"]]))
    assert args.leader_elect and args.leader_election_namespace == "httpsync-system"
    assert args.leader_election_id == deployment["metadata"]["name"]
    roles = [r for r in of_kind(docs, "Role") if r["metadata"]["name"].endswith("-leader-election")]
    assert len(roles) == 1 and roles[0]["metadata"]["namespace"] == "httpsync-system"
    assert rules_table(roles[0]["rules"]) == {("coordination.k8s.io", "leases"): {"get", "create", "update"}}
    assert one(docs, "PodDisruptionBudget")["spec"]["minAvailable"] == 1

    single = render(helm_bin, tmp_path, {})
    assert one(single, "Deployment")["spec"]["replicas"] == 1
    assert "--leader-elect" not in container(single)["args"]
    assert not of_kind(single, "PodDisruptionBudget")
    assert not [r for r in of_kind(single, "Role") if "leader" in r["metadata"]["name"]]


def test_replicas_refuse_a_volume_they_cannot_share(helm_bin: Path, tmp_path: Path) -> None:
    proc = template(helm_bin, tmp_path, {"replicaCount": 2, "persistence": {"enabled": True}}, check=False)
    assert isinstance(proc, subprocess.CompletedProcess)
    assert proc.returncode != 0 and "ReadWriteMany" in proc.stderr
    shared = {"replicaCount": 2, "persistence": {"enabled": True, "accessModes": ["ReadWriteMany"]}}
    assert one(render(helm_bin, tmp_path, shared), "Deployment")["spec"]["replicas"] == 2
