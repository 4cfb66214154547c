"""Read HttpSource, HttpEndpointMapping and Secret manifests from files, for the local CLI.

``-f`` takes files or directories (searched recursively for ``.yaml``, ``.yml`` and ``.json``),
each holding one or more documents (YAML ``---`` streams, a JSON array, or a ``kind: List``).
Every problem names the file, the object and the field::

    examples/x.yaml: HttpEndpointMapping users: spec.selector.dataPth: unknown field

Objects of other kinds are ignored with a note. Secret values are registered for redaction as
soon as they are read and never appear in a message.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from httpsync.api.models import API_VERSION, HttpEndpointMapping, HttpSource
from httpsync.errors import SecretError
from httpsync.http.redact import register_secret

SUFFIXES = (".yaml", ".yml", ".json")
DEFAULT_NAMESPACE = "default"
MAX_ERRORS_PER_OBJECT = 20


class ManifestError(Exception):
    """The manifests are invalid; ``problems`` holds one line per problem."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


@dataclass(slots=True)
class Manifests:
    sources: dict[tuple[str, str], HttpSource] = field(default_factory=dict)
    mappings: list[HttpEndpointMapping] = field(default_factory=list)
    secrets: dict[tuple[str, str], dict[str, str]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    origin: dict[tuple[str, str, str], str] = field(default_factory=dict)  # (kind, ns, name) -> file

    def where(self, obj: HttpSource | HttpEndpointMapping) -> str:
        """``file: Kind name`` for messages about ``obj``."""
        ns, name = namespace_of(obj), obj.metadata.name
        return f"{self.origin.get((obj.kind, ns, name), '?')}: {obj.kind} {name}"

    def source_of(self, mapping: HttpEndpointMapping) -> HttpSource:
        return self.sources[(namespace_of(mapping), mapping.spec.source_ref.name)]

    def secrets_for(self, namespace: str) -> LocalSecrets:
        return LocalSecrets({name: data for (ns, name), data in self.secrets.items() if ns == namespace})


def namespace_of(obj: HttpSource | HttpEndpointMapping) -> str:
    return obj.metadata.namespace or DEFAULT_NAMESPACE


class LocalSecrets:
    """A :class:`httpsync.engine.types.SecretResolver` over Secret manifests (one namespace)."""

    def __init__(self, secrets: Mapping[str, Mapping[str, str]]) -> None:
        self._secrets = {name: dict(data) for name, data in secrets.items()}
        for data in self._secrets.values():
            for value in data.values():
                register_secret(value)

    async def get(self, name: str, key: str) -> str:
        data = self._secrets.get(name)
        if data is None:
            raise SecretError(f"Secret {name} not found: give its manifest with -f")
        if key not in data:
            raise SecretError(f"Secret {name} has no key {key}")
        return data[key]


# --------------------------------------------------------------------------- files


def manifest_files(paths: Sequence[str | Path]) -> tuple[list[Path], list[str]]:
    """The files to read (directories expanded, sorted), and problems (missing paths)."""
    files: list[Path] = []
    problems: list[str] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            found = sorted(
                p for p in path.rglob("*") if p.is_file() and p.suffix in SUFFIXES and not _hidden(p.relative_to(path))
            )
            if not found:
                problems.append(f"{raw}: no .yaml, .yml or .json files in this directory")
            files += found
        elif path.is_file():
            files.append(path)
        else:
            problems.append(f"{raw}: no such file or directory")
    return files, problems


def _hidden(relative: Path) -> bool:
    return any(part.startswith(".") for part in relative.parts)


def _documents(path: Path) -> Iterator[tuple[int, Any]]:
    """(1-based document number, document) of a file; raises ValueError with a readable message."""
    text = path.read_text(encoding="utf-8")
    if path.suffix == ".json":
        try:
            docs: Iterable[Any] = [json.loads(text)]
        except json.JSONDecodeError as e:
            raise ValueError(f"invalid JSON: {e}") from None
    else:
        try:
            docs = list(yaml.safe_load_all(text))
        except yaml.YAMLError as e:
            raise ValueError(f"invalid YAML: {' '.join(str(e).split())}") from None
    n = 0
    for doc in docs:
        for item in _flatten(doc):
            n += 1
            yield n, item


def _flatten(doc: Any) -> Iterator[Any]:
    if isinstance(doc, list):
        for d in doc:
            yield from _flatten(d)
    elif isinstance(doc, dict) and doc.get("kind") == "List" and isinstance(doc.get("items"), list):
        yield from doc["items"]
    elif doc is not None:
        yield doc


# --------------------------------------------------------------------------- validation messages


def _loc(parts: Sequence[Any]) -> str:
    out = ""
    for p in parts:
        if isinstance(p, int):
            out += f"[{p}]"
        elif isinstance(p, str) and ("[" in p or p.startswith("function-")):
            continue  # pydantic's union/validator tags, not field names
        else:
            out += f".{p}" if out else str(p)
    return out or "(object)"


def _message(err: Mapping[str, Any]) -> str:
    kind = err.get("type")
    if kind == "extra_forbidden":
        return "unknown field"
    if kind == "missing":
        return "required field missing"
    if kind == "literal_error" and tuple(err.get("loc", ()))[:1] == ("apiVersion",):
        return f"must be {API_VERSION}"
    msg = str(err.get("msg", "invalid"))
    for prefix in ("Value error, ", "Assertion failed, "):
        msg = msg.removeprefix(prefix)
    return msg


def validation_problems(prefix: str, error: ValidationError) -> list[str]:
    """One line per pydantic error: ``<prefix>: spec.selector.dataPth: unknown field``."""
    lines = [f"{prefix}: {_loc(e['loc'])}: {_message(e)}" for e in error.errors(include_url=False)]
    extra = len(lines) - MAX_ERRORS_PER_OBJECT
    if extra > 0:
        lines = [*lines[:MAX_ERRORS_PER_OBJECT], f"{prefix}: ... and {extra} more problems"]
    return lines


# --------------------------------------------------------------------------- loading


_MODELS: dict[str, type[BaseModel]] = {"HttpSource": HttpSource, "HttpEndpointMapping": HttpEndpointMapping}


def _secret_data(doc: Mapping[str, Any], where: str, problems: list[str]) -> dict[str, str]:
    data: dict[str, str] = {}
    raw = doc.get("data") or {}
    if not isinstance(raw, dict):
        problems.append(f"{where}: data: must be a map of key to base64 value")
        raw = {}
    for key, value in raw.items():
        try:
            data[str(key)] = base64.b64decode(str(value), validate=True).decode("utf-8")
        except (binascii.Error, ValueError):
            problems.append(f"{where}: data.{key}: not valid base64-encoded UTF-8 text")
    strings = doc.get("stringData") or {}
    if not isinstance(strings, dict):
        problems.append(f"{where}: stringData: must be a map of key to string")
        strings = {}
    for key, value in strings.items():  # stringData wins over data, as in Kubernetes
        if isinstance(value, (dict, list)) or value is None:
            problems.append(f"{where}: stringData.{key}: must be a string")
            continue
        data[str(key)] = value if isinstance(value, str) else json.dumps(value)
    for value in data.values():
        register_secret(value)
    return data


def _meta_name(doc: Mapping[str, Any]) -> tuple[str, str]:
    meta = doc.get("metadata") if isinstance(doc.get("metadata"), dict) else {}
    name, ns = meta.get("name"), meta.get("namespace")
    return (
        name if isinstance(name, str) and name else "(no name)",
        ns if isinstance(ns, str) and ns else DEFAULT_NAMESPACE,
    )


def load_manifests(paths: Sequence[str | Path]) -> Manifests:
    """Read every manifest under ``paths``; raise :class:`ManifestError` listing every problem."""
    files, problems = manifest_files(paths)
    out = Manifests()
    for path in files:
        shown = str(path)
        try:
            docs = list(_documents(path))
        except (OSError, UnicodeDecodeError, ValueError) as e:
            problems.append(f"{shown}: {e}")
            continue
        for n, doc in docs:
            if not isinstance(doc, dict):
                problems.append(f"{shown}: document {n} is not an object")
                continue
            _load_one(shown, n, doc, out, problems)
    _check_references(out, problems)
    if problems:
        raise ManifestError(problems)
    return out


def _load_one(shown: str, n: int, doc: dict[str, Any], out: Manifests, problems: list[str]) -> None:
    kind = doc.get("kind")
    name, ns = _meta_name(doc)
    if not isinstance(kind, str) or not kind:
        problems.append(f"{shown}: document {n} has no kind")
        return
    key = (kind, ns, name)
    if kind in _MODELS or kind == "Secret":
        if key in out.origin:
            problems.append(f"{shown}: {kind} {name} is defined twice (also in {out.origin[key]})")
            return
        out.origin[key] = shown
    where = f"{shown}: {kind} {name}"
    if kind == "Secret":
        if doc.get("apiVersion") != "v1":
            problems.append(f"{where}: apiVersion: must be v1")
        out.secrets[(ns, name)] = _secret_data(doc, where, problems)
        return
    model = _MODELS.get(kind)
    if model is None:
        out.notes.append(f"{shown}: ignoring {kind} {name} (httpsync reads HttpSource, HttpEndpointMapping and Secret)")
        return
    try:
        obj = model.model_validate(doc)
    except ValidationError as e:
        problems.extend(validation_problems(where, e))
        return
    if isinstance(obj, HttpSource):
        out.sources[(ns, name)] = obj
    else:
        assert isinstance(obj, HttpEndpointMapping)
        out.mappings.append(obj)


def _check_references(out: Manifests, problems: list[str]) -> None:
    for m in out.mappings:
        ns = namespace_of(m)
        source = m.spec.source_ref.name
        if (ns, source) not in out.sources and ("HttpSource", ns, source) not in out.origin:  # else: already reported
            problems.append(
                f"{out.where(m)}: spec.sourceRef.name: no HttpSource {source} in namespace {ns} in the files given"
            )
