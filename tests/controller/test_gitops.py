"""What GitOps tools and scripts are told (issue 16): the wait documented in docs/gitops.md, run as it is written
against resources the real operator drove into Ready, Stalled and a retried failure; and the operator's floor under
``spec.interval`` (``httpsync run --min-interval``, HTTPSYNC_MIN_INTERVAL).

The operator of this module (tests/controller/harness.py, ``httpsync run`` in a subprocess) runs with
``HTTPSYNC_MIN_INTERVAL=1h``, so that a source's 30s interval is raised to an hour where a user sees it
(``status.nextSyncTime``) and in the operator's log.
"""

from __future__ import annotations

import json
import logging
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from httpsync.api.models import MIN_INTERVAL_SECONDS, HttpSourceSpec
from httpsync.cli.main import build_parser
from httpsync.controller.config import IntervalFloor, min_interval
from httpsync.controller.objects import SourceObject, iso
from httpsync.controller.run import config_from_args
from tests.controller.harness import (  # noqa: F401 (api_fixture: the pytest fixture api)
    TOKEN,
    ItemsApi,
    Operator,
    api_fixture,
    apply,
    condition,
    get,
    mapping,
    ready,
    secret,
    source,
    users,
    wait_for,
)

REPO = Path(__file__).resolve().parents[2]
GITOPS_DOC = REPO / "docs" / "gitops.md"


def bash_blocks() -> list[str]:
    return re.findall(r"^```bash\n(.*?)^```$", GITOPS_DOC.read_text(), flags=re.S | re.M)


def wait_function() -> str:
    (block,) = [b for b in bash_blocks() if "httpsync_wait() {" in b]
    return block


def jsonpath_wait_line() -> str:
    (line,) = [ln for b in bash_blocks() for ln in b.splitlines() if ln.startswith("kubectl wait --for=jsonpath=")]
    return line


# ---------------------------------------------------------------------------- the documented wait


def test_the_documented_wait_passes_shellcheck() -> None:
    found = shutil.which("shellcheck", path=str(Path(sys.executable).parent)) or shutil.which("shellcheck")
    if not found:
        pytest.fail("shellcheck comes with the test extras (`.venv/bin/pip install -e '.[test]'`)", pytrace=False)
    proc = subprocess.run(
        [found, "--shell=bash", "-"], input=wait_function(), capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.fixture(scope="module")
def operator(kube: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Operator]:
    """The harness's operator, with the floor under spec.interval raised to an hour through its environment."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HTTPSYNC_MIN_INTERVAL", "1h")
        op = Operator(kube, tmp_path_factory.mktemp("operator"))
        op.start()
    try:
        yield op
    finally:
        op.stop()


@pytest.fixture(scope="module")
def down() -> Iterator[ItemsApi]:
    """An API that answers every request with 503: a failure the next sync retries (not Stalled)."""
    a = ItemsApi()
    a.fail_status = 503
    a.start()
    yield a
    a.stop()


def httpsync_wait(kube: Any, ns: str, resource: str, timeout: int) -> subprocess.CompletedProcess[str]:
    """The function of docs/gitops.md, as it is written there, in bash with kubectl on PATH."""
    script = f'{wait_function()}\nhttpsync_wait "$1" "$2" "$3"\n'
    return subprocess.run(
        ["bash", "-c", script, "httpsync_wait", ns, resource, str(timeout)],
        env=kube.env, capture_output=True, text=True, timeout=timeout + 60,
    )  # fmt: skip


def kstatus(kube: Any, obj: dict[str, Any]) -> str:
    """The real kstatus library's verdict (hack/kstatus, built with the control plane)."""
    binary = kube.bin_dir / "kstatus"
    proc = subprocess.run([str(binary)], input=json.dumps(obj), capture_output=True, text=True, timeout=30)
    assert proc.returncode == 0, f"kstatus failed ({proc.returncode}): {proc.stderr}"
    return str(json.loads(proc.stdout)["status"])


@pytest.mark.cluster
def test_wait_is_0_when_ready_and_1_at_once_when_stalled(
    kube: Any, api: ItemsApi, down: ItemsApi, operator: Operator
) -> None:
    ns = kube.new_namespace("gitops")
    path = f"/{ns}/users"
    api.set_items(path, users(ns, 3))
    apply(
        kube, ns,
        secret("api-creds", token=TOKEN),
        source("api", api.url),
        mapping("users", "api", path),
        source("nosecret", api.url, auth={"type": "bearer", "secretRef": {"name": "missing", "key": "token"}}),
        mapping("unread", "nosecret", path),
        source("down", down.url),
        mapping("down-users", "down", path),
    )  # fmt: skip

    # Ready: 0, for the source and for its mapping (kstatus: Current).
    for what in ("hsrc/api", "hem/users"):
        proc = httpsync_wait(kube, ns, what, 300)
        assert proc.returncode == 0, f"{what}: {proc.stderr}\n{operator.log()}"
        assert kstatus(kube, get(kube, ns, what)) == "Current"

    # Stalled (the Secret is missing): 1, said to be Stalled, not a timeout of the 300 s it was given.
    for what in ("hsrc/nosecret", "hem/unread"):
        proc = httpsync_wait(kube, ns, what, 300)
        assert proc.returncode == 1, f"{what}: {proc.stdout}{proc.stderr}"
        assert f"{what} is Stalled:" in proc.stderr and "timed out" not in proc.stderr, proc.stderr
        obj = get(kube, ns, what)
        assert condition(obj, "Ready")["reason"] == "SecretNotFound"
        assert condition(obj, "Stalled")["status"] == "True"
        assert kstatus(kube, obj) == "Failed"
    assert "missing" in httpsync_wait(kube, ns, "hsrc/nosecret", 300).stderr, "the Ready message says why"

    # The documented jsonpath wait finds it Stalled; `--for=condition=Ready` on it only times out.
    command = jsonpath_wait_line().replace("httpsource/NAME", "httpsource/nosecret").replace("-n NS", f"-n {ns}")
    proc = subprocess.run(["bash", "-c", command], env=kube.env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "condition met" in proc.stdout
    waited = kube.kubectl("wait", "-n", ns, "--for=condition=Ready", "httpsource/nosecret", "--timeout=2s", check=False)
    assert waited.returncode != 0 and "timed out" in waited.stderr, waited.stderr

    # A failed sync that the next one retries (HTTP 503): Ready=False without Stalled is not a verdict (InProgress),
    # so the wait goes on until its own timeout.
    failed = wait_for(ready(kube, ns, "hsrc/down", "False"), "the 503 source Ready=False", operator=operator)
    assert condition(failed, "Stalled") is None
    assert kstatus(kube, failed) == "InProgress"
    proc = httpsync_wait(kube, ns, "hsrc/down", 3)
    assert proc.returncode == 1 and "hsrc/down: timed out waiting for Ready (Ready=False:" in proc.stderr, proc.stderr

    # A resource that does not exist: 1 (kubectl's error), not a wait.
    proc = httpsync_wait(kube, ns, "hsrc/nonexistent", 300)
    assert proc.returncode == 1 and "not found" in proc.stderr, proc.stderr


# ---------------------------------------------------------------------------- the floor under spec.interval


def _seconds(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


@pytest.mark.cluster
def test_operator_syncs_no_more_often_than_its_min_interval(kube: Any, api: ItemsApi, operator: Operator) -> None:
    ns = kube.new_namespace("gitops")
    path = f"/{ns}/users"
    api.set_items(path, users(ns, 1))
    apply(
        kube, ns, secret("api-creds", token=TOKEN), source("fast", api.url, interval="30s"), mapping("u", "fast", path)
    )
    src = wait_for(ready(kube, ns, "hsrc/fast"), "source Ready", operator=operator)
    src = wait_for(
        lambda: (s := get(kube, ns, "hsrc/fast"))["status"].get("nextSyncTime") and s, "nextSyncTime", operator=operator
    )
    # The next sync is scheduled at least half an interval ahead: with 30s, within 45 s; with the floor of 1h, 30 min.
    gap = _seconds(src["status"]["nextSyncTime"]) - _seconds(src["status"]["lastSyncTime"])
    assert gap >= 1800 - 60, src["status"]
    log = operator.log(tail=10**7)
    assert f"HttpSource {ns}/fast: spec.interval of 30s is below the minimum of 3600s; syncing every 3600s" in log
    assert log.count(f"HttpSource {ns}/fast: spec.interval") == 1, "said once, not at every sync"


def test_min_interval_flag_and_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HTTPSYNC_MIN_INTERVAL", raising=False)
    assert config_from_args(build_parser().parse_args(["run"])).min_interval_seconds == MIN_INTERVAL_SECONDS == 30
    assert config_from_args(build_parser().parse_args(["run", "--min-interval", "5m"])).min_interval_seconds == 300
    monkeypatch.setenv("HTTPSYNC_MIN_INTERVAL", "1h30m")
    assert config_from_args(build_parser().parse_args(["run"])).min_interval_seconds == 5400
    for bad in ("0s", "5 minutes", "-1s"):
        with pytest.raises(SystemExit):
            build_parser().parse_args(["run", "--min-interval", bad])


def _source_body(interval: str, last_sync: float | None = None) -> dict[str, Any]:
    status: dict[str, Any] = {}
    if last_sync is not None:
        status = {"observedGeneration": 1, "lastSyncTime": iso(last_sync)}
    return {
        "apiVersion": "httpsync.io/v1alpha1",
        "kind": "HttpSource",
        "metadata": {"name": "old", "namespace": "ns", "uid": "u-1", "generation": 1},
        "spec": {"baseUrl": "https://api.example.com", "interval": interval},
        "status": status,
    }


def test_an_interval_from_before_the_crd_minimum_is_raised_not_refused(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A source created before the CRD's rule keeps its `interval: 0s` in the API server (unchanged fields are not
    validated again): the operator syncs it, at the floor."""
    with pytest.raises(ValueError, match="interval must be at least 30s"):
        HttpSourceSpec.model_validate({"baseUrl": "https://api.example.com", "interval": "0s"})
    monkeypatch.setattr(min_interval, "seconds", 30.0)
    last = 1_700_000_000.0
    with caplog.at_level(logging.WARNING, logger="httpsync.controller"):
        src = SourceObject.from_body(_source_body("0s", last))
        assert src.spec is not None and src.spec_error is None and src.spec.interval == "0s"
        assert src.interval_seconds == 30 and src.due_at() == last + 30
        assert SourceObject.from_body(_source_body("0s", last)).interval_seconds == 30
    floored = [r for r in caplog.records if "below the minimum" in r.getMessage()]
    assert len(floored) == 1 and "HttpSource ns/old: spec.interval of 0s" in floored[0].getMessage()

    # At or above the floor, the spec's own interval; a malformed one is still an invalid spec.
    assert SourceObject.from_body(_source_body("45s", last)).due_at() == last + 45
    broken = SourceObject.from_body(_source_body("5 minutes"))
    assert broken.spec is None and "interval" in (broken.spec_error or "")
    # A higher floor (--min-interval 5m) raises valid intervals too.
    monkeypatch.setattr(min_interval, "seconds", 300.0)
    assert SourceObject.from_body(_source_body("1m", last)).interval_seconds == 300
    assert SourceObject.from_body(_source_body("1h", last)).interval_seconds == 3600


def test_interval_floor_logs_once_per_source_and_interval(caplog: pytest.LogCaptureFixture) -> None:
    floor = IntervalFloor(60)
    with caplog.at_level(logging.WARNING, logger="httpsync.controller"):
        assert [floor(10, "a"), floor(10, "a"), floor(20, "a"), floor(10, "b"), floor(90, "a")] == [60, 60, 60, 60, 90]
    assert len([r for r in caplog.records if "below the minimum" in r.getMessage()]) == 3
