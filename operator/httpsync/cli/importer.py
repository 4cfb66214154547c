"""``httpsync import ocean``: turn a Port Ocean "custom" (generic HTTP) integration into manifests.

Reads the integration's settings (Helm values, Ocean's ``config.yaml`` or a ``.env`` file of
``OCEAN__...`` variables) and its ``port-app-config.yml``, and writes an ``HttpSource``, the
``Secret`` manifests its credentials need, and one ``HttpEndpointMapping`` per resource.

Every setting is either converted, or reported on its own line (``file:line: key: why``): a
*refusal* (exit 2, nothing written) when the result would sync something else than the
integration did, a *warning* when httpsync behaves differently but the data is the same or the
setting has no effect. Nothing is dropped silently. Credentials go into the Secret file only,
never to the terminal; ``${VAR}`` and ``{{ from env VAR }}`` references become placeholders, or
the values of ``--secret-values FILE``. The output is then loaded and checked exactly as
``httpsync sync`` checks its manifests.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import tempfile
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

import yaml

from httpsync.cli import CommandError

EXIT_INVALID = 2
OCEAN_TYPES = {"custom", "generic-http", "http-server", "ocean-custom"}
PAGINATION_TYPES = {
    "none": "none",
    "offset": "offset",
    "page": "page",
    "cursor": "cursor",
    "next_link": "nextLink",
    "header_link": "linkHeader",
}
AUTH_TYPES = {"none", "bearer_token", "basic", "api_key", "custom"}
_REF = re.compile(r"^\s*(?:\$\{([A-Za-z_][A-Za-z0-9_]*)\}|\{\{\s*from\s+env\s+([A-Za-z_][A-Za-z0-9_]*)\s*\}\})\s*$")
_ANY_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}|\{\{\s*from\s+env\s+([A-Za-z_][A-Za-z0-9_]*)\s*\}\}")
_TEMPLATE = re.compile(r"\{\{\s*(.*?)\s*\}\}")
_SECRET_HEADER = re.compile(r"(?i)authorization|cookie|token|secret|key|password|signature")
_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_DNS = re.compile(r"[^a-z0-9]+")
PLACEHOLDER_PREFIX = "REPLACE_ME_"
# Settings whose values go into a Secret (so an environment reference becomes a placeholder there).
CREDENTIAL_KEYS = {"apiToken", "username", "password", "apiKey", "customAuthRequest", "customHeaders"}


def register(subparsers: Any) -> None:
    p: argparse.ArgumentParser = subparsers.add_parser(
        "import",
        help="convert another tool's configuration into httpsync manifests",
        description="Convert another tool's configuration into httpsync manifests.",
    )
    tools = p.add_subparsers(dest="tool", metavar="TOOL", required=True)
    o: argparse.ArgumentParser = tools.add_parser(
        "ocean",
        help="Port Ocean's custom (generic HTTP) integration",
        description="Convert a Port Ocean custom (generic HTTP) integration: its settings (--config: Helm "
        "values, Ocean config.yaml or an OCEAN__ .env file) and its port-app-config.yml (--mapping) become an "
        "HttpSource, Secrets and one HttpEndpointMapping per resource. Every setting without an equivalent is "
        "reported on its own line; refusals exit 2 and write nothing. Credentials are never printed.",
    )
    o.add_argument("--config", required=True, metavar="FILE", help="the integration's settings")
    o.add_argument("--mapping", required=True, metavar="FILE", help="the integration's port-app-config.yml")
    o.add_argument("-n", "--namespace", default="default", help="namespace of the objects (default: default)")
    o.add_argument("--name", help="name of the HttpSource (default: the integration's identifier)")
    o.add_argument(
        "-o",
        "--output-dir",
        metavar="DIR",
        help="write one file per object here (default: print them, with the Secrets' values left out)",
    )
    o.add_argument(
        "--secret-values",
        metavar="FILE",
        help="a KEY=VALUE file giving the values of ${KEY} references (else they become placeholders)",
    )
    o.add_argument("--force", action="store_true", help="overwrite files in --output-dir")
    o.set_defaults(handler=run)


# --------------------------------------------------------------------------- reading, with line numbers


@dataclass
class Doc:
    """A parsed file and the line of each key path (``("integration", "config", "baseUrl")``)."""

    path: str
    data: Any
    lines: dict[tuple[Any, ...], int] = field(default_factory=dict)

    def where(self, *keys: Any) -> str:
        for n in range(len(keys), 0, -1):
            line = self.lines.get(tuple(keys[:n]))
            if line is not None:
                return f"{self.path}:{line}"
        return self.path


def _yaml_lines(node: yaml.Node, prefix: tuple[Any, ...], out: dict[tuple[Any, ...], int]) -> None:
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            path = (*prefix, key.value)
            out[path] = key.start_mark.line + 1
            _yaml_lines(value, path, out)
    elif isinstance(node, yaml.SequenceNode):
        for i, value in enumerate(node.value):
            out[(*prefix, i)] = value.start_mark.line + 1
            _yaml_lines(value, (*prefix, i), out)


def read_yaml(path: str) -> Doc:
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as e:
        raise CommandError(f"{path}: {e.strerror or e}", EXIT_INVALID) from None
    except UnicodeDecodeError:
        raise CommandError(f"{path}: not UTF-8 text", EXIT_INVALID) from None
    try:
        data = yaml.safe_load(text)
        node = yaml.compose(text)
    except yaml.YAMLError as e:
        raise CommandError(f"{path}: invalid YAML: {' '.join(str(e).split())}", EXIT_INVALID) from None
    doc = Doc(path, data)
    if node is not None:
        _yaml_lines(node, (), doc.lines)
    return doc


def read_env(path: str) -> Doc:
    """An ``.env`` file of ``OCEAN__...`` variables, as the nested settings Ocean builds from it."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise CommandError(f"{path}: {getattr(e, 'strerror', None) or e}", EXIT_INVALID) from None
    data: dict[str, Any] = {}
    doc = Doc(path, data)
    for n, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.removeprefix("export ").partition("=")
        key, value = key.strip(), value.strip()
        if not sep or not key.upper().startswith("OCEAN__"):
            continue
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        parsed: Any = value
        if value[:1] in "{[":
            try:
                parsed = json.loads(value)
            except json.JSONDecodeError:
                parsed = value
        parts = [p.lower() for p in key.split("__")[1:]]
        target = data
        keys: tuple[Any, ...] = ()
        for p in parts[:-1]:
            name = _camel(p)
            keys = (*keys, name)
            target = target.setdefault(name, {})
            if not isinstance(target, dict):
                break
        else:
            name = _camel(parts[-1])
            target[name] = parsed
            doc.lines[(*keys, name)] = n
    return doc


def read_key_values(path: str) -> dict[str, str]:
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise CommandError(f"{path}: {getattr(e, 'strerror', None) or e}", EXIT_INVALID) from None
    out: dict[str, str] = {}
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.removeprefix("export ").partition("=")
        if sep:
            value = value.strip()
            if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
                value = value[1:-1]
            out[key.strip()] = value
    return out


def _camel(key: str) -> str:
    if "_" not in key:
        return key
    first, *rest = key.split("_")
    return first.lower() + "".join(p[:1].upper() + p[1:] for p in rest if p)


# --------------------------------------------------------------------------- the conversion


@dataclass
class Report:
    refusals: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def refuse(self, where: str, key: str, message: str) -> None:
        self.refusals.append(f"{where}: {key}: {message}")

    def warn(self, where: str, key: str, message: str) -> None:
        self.warnings.append(f"{where}: {key}: {message}")


@dataclass
class SecretBag:
    """One Secret manifest: its values (kept out of every message) and the keys still to fill in."""

    name: str
    data: dict[str, str] = field(default_factory=dict)
    placeholders: dict[str, str] = field(default_factory=dict)  # key -> the variable it stands for

    def put(self, key: str, value: Any, given: Mapping[str, str]) -> None:
        text = "" if value is None else str(value)
        ref = _REF.match(text)
        if ref:
            var = ref.group(1) or ref.group(2)
            if var in given:
                self.data[key] = given[var]
            else:
                self.data[key] = PLACEHOLDER_PREFIX + var
                self.placeholders[key] = var
            return
        if _ANY_REF.search(text):  # "Bearer ${TOKEN}": fill in what is known
            missing: list[str] = []

            def sub(m: re.Match[str]) -> str:
                var = m.group(1) or m.group(2)
                if var in given:
                    return given[var]
                missing.append(var)
                return PLACEHOLDER_PREFIX + var

            self.data[key] = _ANY_REF.sub(sub, text)
            if missing:
                self.placeholders[key] = ", ".join(missing)
            return
        self.data[key] = text


@dataclass
class Result:
    source: dict[str, Any]
    secrets: list[SecretBag]
    mappings: list[dict[str, Any]]
    report: Report


def _dot_path_to_jq(path: str) -> str:
    """Ocean's dot paths (``meta.after_cursor``, ``@odata.nextLink``) as jq."""
    path = path.strip()
    if path.startswith("."):
        return path
    parts = path.split(".")
    if len(parts) == 1:
        return "." + (path if _IDENT.match(path) else json.dumps(path))
    dotted = "".join("." + (p if _IDENT.match(p) else json.dumps(p)) for p in parts)
    if all(_IDENT.match(p) for p in parts):
        return dotted
    return f"({'.' + json.dumps(path)} // {dotted})"  # Ocean tries the literal key first


def template_to_jq(text: str) -> str:
    """``Bearer {{.access_token}}`` as the jq ``"Bearer " + (.access_token | tostring)``."""
    pieces: list[str] = []
    pos = 0
    for m in _TEMPLATE.finditer(text):
        if m.start() > pos:
            pieces.append(json.dumps(text[pos : m.start()]))
        pieces.append(f"({m.group(1)} | tostring)")
        pos = m.end()
    if pos < len(text):
        pieces.append(json.dumps(text[pos:]))
    if len(pieces) == 1 and pieces[0].startswith("("):
        return pieces[0][1:-1].removesuffix(" | tostring")
    return " + ".join(pieces) or '""'


def dns_name(text: str, fallback: str = "resource") -> str:
    name = _DNS.sub("-", text.lower()).strip("-")[:63].strip("-")
    return name or fallback


def _int(value: Any, where: str, key: str, report: Report, minimum: int = 0) -> int | None:
    if isinstance(value, bool):
        report.refuse(where, key, f"{value!r} is not a number")
        return None
    try:
        number = int(str(value).strip())
    except ValueError:
        report.refuse(where, key, f"{value!r} is not a whole number")
        return None
    if number < minimum:
        report.refuse(where, key, f"{number} is below {minimum}")
        return None
    return number


def _query_value(value: Any) -> str | None:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float, str)):
        return str(value)
    return None


def _env_refs_as_secret_refs(value: Any) -> Any:
    """``{{ from env X }}`` written as ``${X}`` (the form auth.custom resolves from its Secret)."""
    if isinstance(value, str):
        return _ANY_REF.sub(lambda m: "${" + (m.group(1) or m.group(2)) + "}", value)
    if isinstance(value, dict):
        return {k: _env_refs_as_secret_refs(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_env_refs_as_secret_refs(v) for v in value]
    return value


def _has_field(model: type, name: str) -> bool:
    return name in getattr(model, "model_fields", {})


class Converter:
    def __init__(self, config: Doc, app: Doc, namespace: str, name: str | None, given: Mapping[str, str]) -> None:
        self.cfg_doc = config
        self.app_doc = app
        self.namespace = namespace
        self.given = given
        self.report = Report()
        self.name_arg = name
        self.api_secret: SecretBag | None = None
        self.port_secret: SecretBag | None = None

    # -- settings file layout

    def _settings(self) -> tuple[dict[str, Any], dict[str, Any], tuple[Any, ...], dict[str, Any], dict[str, Any]]:
        """(top level, integration config, its key path, integration secrets, port)"""
        data = self.cfg_doc.data
        if not isinstance(data, dict):
            raise CommandError(f"{self.cfg_doc.path}: expected a map of settings", EXIT_INVALID)
        integration = data.get("integration")
        if isinstance(integration, dict):
            config = integration.get("config") or {}
            secrets = integration.get("secrets") or {}
            prefix: tuple[Any, ...] = ("integration", "config")
        else:  # the integration's config on its own
            integration, config, secrets, prefix = {}, data, {}, ()
        if not isinstance(config, dict) or not isinstance(secrets, dict):
            raise CommandError(f"{self.cfg_doc.where('integration')}: integration.config must be a map", 2)
        port = data.get("port") if isinstance(data.get("port"), dict) else {}
        return data, config, prefix, secrets, port

    def convert(self) -> Result:
        top, raw_config, prefix, raw_secrets, port = self._settings()
        r = self.report
        where = self.cfg_doc.where
        # Keys as Ocean reads them (camelCase or snake_case); remember where each came from.
        config: dict[str, Any] = {}
        origin: dict[str, str] = {}
        for key, value in raw_config.items():
            config[_camel(str(key))] = value
            origin[_camel(str(key))] = where(*prefix, key)
        for key, value in raw_secrets.items():
            config[_camel(str(key))] = value
            origin[_camel(str(key))] = where("integration", "secrets", key)
        at = lambda key: origin.get(key, self.cfg_doc.path)  # noqa: E731
        unresolved: set[str] = set()
        for key, value in list(config.items()):
            ref = _REF.match(value) if isinstance(value, str) and key not in CREDENTIAL_KEYS else None
            if ref:  # a plain setting given by the environment: its value is needed now
                var = ref.group(1) or ref.group(2)
                if var in self.given:
                    config[key] = self.given[var]
                else:
                    r.refuse(at(key), key, f"comes from the environment (${{{var}}}): give {var} in --secret-values")
                    unresolved.add(key)
                    del config[key]

        integration = top.get("integration") if isinstance(top.get("integration"), dict) else {}
        kind = integration.get("type")
        if kind is not None and str(kind) not in OCEAN_TYPES:
            r.warn(
                where("integration", "type"),
                "integration.type",
                f"{kind!r} is not the custom (generic HTTP) integration",
            )
        name = self.name_arg or dns_name(str(integration.get("identifier") or ""), "ocean-import")
        if self.name_arg and dns_name(self.name_arg) != self.name_arg:
            raise CommandError(f"--name {self.name_arg!r}: use lower-case letters, digits and '-'", EXIT_INVALID)
        self.source_name = name
        self.api_secret = SecretBag(f"{name}-credentials")

        spec: dict[str, Any] = {}
        base = config.pop("baseUrl", None)
        if not base:
            if "baseUrl" not in unresolved:
                r.refuse(self.cfg_doc.path, "baseUrl", "missing: httpsync needs the API's base URL")
        elif not re.match(r"^https?://[^/]", str(base)):
            r.refuse(at("baseUrl"), "baseUrl", f"{base!r} is not an http:// or https:// URL")
        else:
            spec["baseUrl"] = str(base).rstrip("/")
        if config.pop("multipleHosts", False) in (True, "true", "True"):
            r.refuse(
                at("multipleHosts"),
                "multipleHosts",
                "one HttpSource has one baseUrl: split the resources by host into one import each",
            )
        spec["auth"] = self._auth(config, at, spec.get("baseUrl", ""))
        pagination = self._pagination(config, at)
        if pagination:
            spec["pagination"] = pagination
        headers = self._custom_headers(config.pop("customHeaders", None), at("customHeaders"), spec)
        if headers:
            spec["headers"] = headers
        if "timeout" in config:
            t = _int(config.pop("timeout"), at("timeout"), "timeout", r, 1)
            if t is not None:
                spec["timeoutSeconds"] = t
                r.warn(
                    at("timeout"),
                    "timeout",
                    f"Ocean ignored it (a 60 s client timeout applied); httpsync applies {t} s per request",
                )
        if "verifySsl" in config:
            verify = config.pop("verifySsl")
            if str(verify).lower() in ("false", "0", "no"):
                spec["tls"] = {"insecureSkipVerify": True}
                r.warn(
                    at("verifySsl"),
                    "verifySsl",
                    "false: tls.insecureSkipVerify is set; prefer tls.caBundle with the API's CA",
                )
        if "maxConcurrentRequests" in config:
            n = _int(config.pop("maxConcurrentRequests"), at("maxConcurrentRequests"), "maxConcurrentRequests", r, 1)
            if n is not None:
                spec["maxConcurrentRequests"] = n
        for key in sorted(config):
            r.warn(at(key), key, "not a setting of Ocean's custom integration; ignored")

        self._top_level(top, spec)
        self._port_sink(port, spec)
        mappings = self._resources(spec)
        source = {
            "apiVersion": "httpsync.io/v1alpha1",
            "kind": "HttpSource",
            "metadata": {"name": name, "namespace": self.namespace},
            "spec": spec,
        }
        secrets = [s for s in (self.api_secret, self.port_secret) if s is not None and s.data]
        return Result(source, secrets, mappings, r)

    # -- auth

    def _secret_ref(self, key: str | None = None) -> dict[str, Any]:
        assert self.api_secret is not None
        ref: dict[str, Any] = {"name": self.api_secret.name}
        if key:
            ref["key"] = key
        return ref

    def _auth(self, config: dict[str, Any], at: Any, base_url: str) -> dict[str, Any]:
        r = self.report
        assert self.api_secret is not None
        auth_type = str(config.pop("authType", "none") or "none")
        token, user, password = config.pop("apiToken", None), config.pop("username", None), config.pop("password", None)
        key, key_header = config.pop("apiKey", None), config.pop("apiKeyHeader", None)
        request = config.pop("customAuthRequest", None)
        template = config.pop("customAuthRequestTemplate", None) or config.pop("customAuthResponse", None)
        if auth_type not in AUTH_TYPES:
            r.refuse(
                at("authType"),
                "authType",
                f"{auth_type!r} is unknown (Ocean silently used none): "
                "use none, bearer_token, basic, api_key or custom",
            )
            return {"type": "none"}
        unused = {
            "apiToken": (token, "bearer_token"),
            "username": (user, "basic"),
            "password": (password, "basic"),
            "apiKey": (key, "api_key"),
            "apiKeyHeader": (key_header, "api_key"),
            "customAuthRequest": (request, "custom"),
        }
        for name, (value, needs) in unused.items():
            if value is not None and auth_type != needs:
                r.warn(at(name), name, f"only used with authType {needs}; left out")
        if auth_type == "none":
            return {"type": "none"}
        if auth_type == "bearer_token":
            if token is None:
                r.refuse(at("authType"), "apiToken", "authType bearer_token needs apiToken")
            self.api_secret.put("token", token, self.given)
            return {"type": "bearer", "secretRef": self._secret_ref()}
        if auth_type == "basic":
            if user is None or password is None:
                r.refuse(
                    at("authType"), "username/password", "authType basic needs both (Ocean sent no auth without them)"
                )
            self.api_secret.put("username", user, self.given)
            self.api_secret.put("password", password, self.given)
            return {"type": "basic", "secretRef": self._secret_ref()}
        if auth_type == "api_key":
            if key is None:
                r.refuse(at("authType"), "apiKey", "authType api_key needs apiKey")
            self.api_secret.put("apiKey", key, self.given)
            auth: dict[str, Any] = {"type": "apiKey", "secretRef": self._secret_ref()}
            if key_header and key_header != "X-API-Key":
                auth["header"] = str(key_header)
            return auth
        return self._custom_auth(request, template, at, base_url)

    def _custom_auth(self, request: Any, template: Any, at: Any, base_url: str) -> dict[str, Any]:
        from httpsync.api.models import AuthSpec

        r = self.report
        assert self.api_secret is not None
        if isinstance(request, str):
            try:
                request = json.loads(request)
            except json.JSONDecodeError:
                r.refuse(at("customAuthRequest"), "customAuthRequest", "not valid JSON")
                return {"type": "none"}
        if isinstance(template, str):
            try:
                template = json.loads(template)
            except json.JSONDecodeError:
                r.refuse(at("customAuthRequestTemplate"), "customAuthRequestTemplate", "not valid JSON")
                return {"type": "none"}
        if not isinstance(request, dict) or not request.get("endpoint"):
            r.refuse(at("authType"), "customAuthRequest", "authType custom needs customAuthRequest with an endpoint")
            return {"type": "none"}
        template = template if isinstance(template, dict) else {}
        endpoint = str(request["endpoint"])
        url = endpoint if re.match(r"^https?://", endpoint) else base_url.rstrip("/") + "/" + endpoint.lstrip("/")
        interval = request.get("reauthenticateIntervalSeconds")

        # The common case, OAuth2 client credentials in a form, has an exact equivalent.
        form = dict(parse_qsl(str(request.get("bodyForm") or ""), keep_blank_values=True))
        header_jq = {k: template_to_jq(str(v)) for k, v in (template.get("headers") or {}).items()}
        plain_headers = {k.lower() for k in (request.get("headers") or {})} <= {"content-type", "accept"}
        if (
            str(request.get("method", "POST")).upper() == "POST"
            and form.get("grant_type") == "client_credentials"
            and "client_id" in form
            and "client_secret" in form
            and set(form) <= {"grant_type", "client_id", "client_secret", "scope", "audience"}
            and not request.get("body")
            and not request.get("queryParams")
            and plain_headers
            and header_jq == {"Authorization": '"Bearer " + (.access_token | tostring)'}
            and not template.get("queryParams")
            and not template.get("body")
        ):
            self.api_secret.put("clientId", form["client_id"], self.given)
            self.api_secret.put("clientSecret", form["client_secret"], self.given)
            auth: dict[str, Any] = {"type": "oauth2ClientCredentials", "tokenUrl": url, "secretRef": self._secret_ref()}
            if form.get("scope"):
                auth["scopes"] = form["scope"].split()
            if form.get("audience"):
                auth["audience"] = form["audience"]
            if interval is not None:
                r.warn(
                    at("customAuthRequest"),
                    "customAuthRequest.reauthenticateIntervalSeconds",
                    "not needed: httpsync renews the token when its expires_in runs out, and once on a 401",
                )
            return auth

        if not _has_field(AuthSpec, "custom"):
            r.warn(
                at("customAuthRequest"),
                "customAuthRequest",
                "authType custom (other than an OAuth2 client-credentials form) is not yet supported by this "
                "httpsync; the source is written with auth.type none: add the login flow by hand once auth.type "
                "custom is available",
            )
            return {"type": "none"}
        custom_request: dict[str, Any] = {"url": endpoint, "method": str(request.get("method", "POST")).upper()}
        for key in ("headers", "queryParams", "body"):
            if request.get(key):
                custom_request[key] = request[key]
        if request.get("bodyForm"):
            custom_request["bodyForm"] = form  # Ocean's "a=1&b=2" as the map httpsync takes
        # Ocean's ${ENV} references in the login request become ${key} references to the source's Secret
        # (auth.custom resolves them): the value from --secret-values, else a placeholder to fill in.
        refs = sorted({m.group(1) or m.group(2) for m in _ANY_REF.finditer(json.dumps(custom_request))})
        for var in refs:
            self.api_secret.put(var, "${" + var + "}", self.given)
        custom_template = {
            key: {k: template_to_jq(str(v)) for k, v in template[key].items()}
            for key in ("headers", "queryParams", "body")
            if isinstance(template.get(key), dict) and template[key]
        }
        custom: dict[str, Any] = {"request": _env_refs_as_secret_refs(custom_request), "template": custom_template}
        if interval is not None:
            custom["reauthenticateInterval"] = f"{int(interval)}s"
        auth: dict[str, Any] = {"type": "custom", "custom": custom}
        if refs:
            auth["secretRef"] = self._secret_ref()
        literal = [k for k in ("headers", "queryParams", "body", "bodyForm") if custom_request.get(k)]
        if literal and not refs:
            r.warn(
                at("customAuthRequest"),
                "customAuthRequest",
                "the login request is copied as written: make its credentials ${key} references to the Secret "
                f"{self.api_secret.name} before committing the manifests",
            )
        return auth

    # -- pagination

    def _pagination(self, config: dict[str, Any], at: Any) -> dict[str, Any]:
        r = self.report
        raw = str(config.pop("paginationType", "none") or "none")
        keys = ("pageSize", "paginationParam", "sizeParam", "startPage", "cursorPath", "hasMorePath",
                "lastPagePath", "nextLinkPath", "headerLinkRel")  # fmt: skip
        values = {k: config.pop(k) for k in keys if k in config}
        kind = PAGINATION_TYPES.get(raw)
        if kind is None:
            r.refuse(at("paginationType"), "paginationType", f"{raw!r} is unknown (Ocean silently used none)")
            return {}
        allowed = {
            "none": set(),
            "offset": {"pageSize", "paginationParam", "sizeParam", "hasMorePath"},
            "page": {"pageSize", "paginationParam", "sizeParam", "startPage", "hasMorePath", "lastPagePath"},
            "cursor": {"pageSize", "paginationParam", "sizeParam", "cursorPath", "hasMorePath"},
            "nextLink": {"nextLinkPath"},
            "linkHeader": {"headerLinkRel"},
        }[kind]
        out: dict[str, Any] = {"type": kind}
        for key, value in values.items():
            if key not in allowed:
                r.warn(at(key), key, f"Ocean does not use it with paginationType {raw}; left out")
                continue
            if key in ("pageSize", "startPage"):
                n = _int(value, at(key), key, r, 1 if key == "pageSize" else 0)
                if n is not None:
                    out[key] = n
            elif key in ("cursorPath", "hasMorePath", "lastPagePath", "nextLinkPath"):
                out[key] = _dot_path_to_jq(str(value))
            elif key == "headerLinkRel":
                out["linkRel"] = str(value)
            else:
                out[key] = str(value)
        if kind == "cursor" and "cursorPath" not in out:
            out["cursorPath"] = ".next_cursor // .cursor // .meta.after_cursor // .links.next"
        return out if kind != "none" else {}

    # -- headers

    def _custom_headers(self, raw: Any, where: str, spec: dict[str, Any]) -> dict[str, str]:
        r = self.report
        assert self.api_secret is not None
        if raw is None:
            return {}
        if isinstance(raw, str):
            try:
                raw = json.loads(raw)
            except json.JSONDecodeError:
                r.refuse(where, "customHeaders", "not valid JSON")
                return {}
        if not isinstance(raw, dict):
            r.refuse(where, "customHeaders", "must be a map of header name to value")
            return {}
        plain: dict[str, str] = {}
        for header, value in raw.items():
            text = str(value)
            secret = bool(_ANY_REF.search(text)) or bool(_SECRET_HEADER.search(str(header)))
            if not secret:
                plain[str(header)] = text
                continue
            auth = spec["auth"]
            if (
                auth.get("type") == "none"
                and str(header).lower() == "authorization"
                and re.match(r"(?i)^bearer\s+\S", text)
            ):
                self.api_secret.put("token", re.sub(r"(?i)^bearer\s+", "", text), self.given)
                spec["auth"] = {"type": "bearer", "secretRef": self._secret_ref()}
            elif auth.get("type") == "none" and str(header).lower() != "authorization":
                self.api_secret.put("apiKey", text, self.given)
                spec["auth"] = {"type": "apiKey", "secretRef": self._secret_ref(), "header": str(header)}
            else:
                r.warn(
                    where,
                    f"customHeaders.{header}",
                    "a credential header besides the auth: httpsync takes one credential per source from a Secret; "
                    "this header is left out",
                )
                continue
            r.warn(
                where,
                f"customHeaders.{header}",
                f"moved into Secret {self.api_secret.name} as auth.type {spec['auth']['type']}",
            )
        return plain

    # -- port-app-config top level and the Port sink

    def _top_level(self, top: dict[str, Any], spec: dict[str, Any]) -> None:
        r = self.report
        where = self.cfg_doc.where
        if "scheduledResyncInterval" in top:
            minutes = _int(
                top["scheduledResyncInterval"], where("scheduledResyncInterval"), "scheduledResyncInterval", r, 1
            )
            if minutes is not None:
                spec["interval"] = f"{minutes}m" if minutes % 60 else f"{minutes // 60}h"
        else:
            r.warn(
                self.cfg_doc.path,
                "scheduledResyncInterval",
                "not set: Ocean resynced only on start; httpsync syncs every hour (spec.interval)",
            )
        notes = {
            "initializePortResources": "httpsync does not create blueprints: create them in Port first",
            "sendRawDataExamples": "no equivalent (use `httpsync preview --item N` to see raw items)",
            "eventListener": "httpsync polls on spec.interval; no event listener",
        }
        for key, note in notes.items():
            if key in top:
                r.warn(where(key), key, note)
        known = {"integration", "port", "scheduledResyncInterval", *notes, "logLevel"}
        for key in top:
            if key not in known and "integration" in top:
                r.warn(where(key), str(key), "not converted (no httpsync equivalent)")

    def _port_sink(self, port: dict[str, Any], spec: dict[str, Any]) -> None:
        where = self.cfg_doc.where
        if not port or (port.get("clientId") is None and port.get("clientSecret") is None):
            return
        if port.get("clientId") is None or port.get("clientSecret") is None:
            self.report.refuse(where("port"), "port", "needs both clientId and clientSecret")
            return
        self.port_secret = SecretBag(f"{self.source_name}-port")
        self.port_secret.put("clientId", port["clientId"], self.given)
        self.port_secret.put("clientSecret", port["clientSecret"], self.given)
        sink_port: dict[str, Any] = {"secretRef": {"name": self.port_secret.name}}
        if port.get("baseUrl"):
            sink_port["baseUrl"] = str(port["baseUrl"]).rstrip("/")
        spec["sink"] = {"type": "port", "port": sink_port}

    def _port_options(self, app: dict[str, Any], spec: dict[str, Any]) -> None:
        from httpsync.api.models import PortSinkSpec

        r = self.report
        where = self.app_doc.where
        options = (
            ("createMissingRelatedEntities", "createMissingRelatedEntities", "create_missing_related_entities", False),
            ("deleteDependentEntities", "deleteDependents", "delete_dependents", False),
        )
        sink = spec.get("sink")
        for key, wire, attr, today in options:
            value = app.get(key, True)  # Ocean's default is true for both
            value = value if isinstance(value, bool) else str(value).lower() == "true"
            if sink is None:
                if key in app:
                    r.warn(
                        where(key),
                        key,
                        "applies to the Port sink only; the source has no port credentials (--config port.clientId)",
                    )
                continue
            if _has_field(PortSinkSpec, attr):
                sink["port"][wire] = value
            elif value != today:
                shown = "set" if key in app else "Ocean's default"
                r.warn(
                    where(key) if key in app else self.app_doc.path,
                    key,
                    f"{str(value).lower()} ({shown}) is not yet supported by this httpsync's Port sink "
                    f"(it behaves as {str(today).lower()})",
                )
        if app.get("enableMergeEntity", True) is False:
            r.warn(where("enableMergeEntity"), "enableMergeEntity", "false: httpsync's Port sink always merges")

    # -- resources

    def _resources(self, spec: dict[str, Any]) -> list[dict[str, Any]]:
        r = self.report
        app = self.app_doc.data
        if not isinstance(app, dict) or not isinstance(app.get("resources"), list):
            raise CommandError(f"{self.app_doc.path}: expected a port-app-config with a resources list", EXIT_INVALID)
        self._port_options(app, spec)
        guard: dict[str, Any] | None = None
        if "entityDeletionThreshold" in app:
            try:
                threshold = float(app["entityDeletionThreshold"])
            except (TypeError, ValueError):
                threshold = -1.0
            if not 0 <= threshold <= 1:
                r.refuse(
                    self.app_doc.where("entityDeletionThreshold"),
                    "entityDeletionThreshold",
                    "must be a number from 0 to 1",
                )
            else:
                guard = {"maxDeletePercent": round(threshold * 100)}
                r.warn(
                    self.app_doc.where("entityDeletionThreshold"),
                    "entityDeletionThreshold",
                    f"applied to each mapping as deletionGuard.maxDeletePercent {guard['maxDeletePercent']} "
                    "(Ocean applied it to the whole integration)",
                )
        for key in app:
            if key not in {
                "resources",
                "createMissingRelatedEntities",
                "deleteDependentEntities",
                "enableMergeEntity",
                "entityDeletionThreshold",
            }:
                r.warn(self.app_doc.where(key), str(key), "not converted (no httpsync equivalent)")
        names: set[str] = set()
        out = []
        for i, resource in enumerate(app["resources"]):
            m = self._resource(i, resource, names)
            if m is not None:
                if guard:
                    m["spec"]["deletionGuard"] = dict(guard)
                out.append(m)
        if not out and not r.refusals:
            r.refuse(self.app_doc.path, "resources", "no resources to convert")
        return out

    def _resource(self, i: int, res: Any, names: set[str]) -> dict[str, Any] | None:
        from httpsync.api.models import SelectorSpec

        r = self.report
        where = lambda *k: self.app_doc.where("resources", i, *k)  # noqa: E731
        label = f"resources[{i}]"
        if not isinstance(res, dict) or not res.get("kind"):
            r.refuse(where(), label, "needs a kind (the endpoint path)")
            return None
        kind = str(res["kind"])
        selector = res.get("selector") or {}
        port = res.get("port") or {}
        if not isinstance(selector, dict) or not isinstance(port, dict):
            r.refuse(where(), label, "selector and port must be maps")
            return None
        if selector.get("endpoint"):
            kind = str(selector["endpoint"])
        if re.match(r"^https?://", kind):
            r.refuse(
                where("kind"), f"{label}.kind", "a full URL (multipleHosts): use a path under the source's baseUrl"
            )
            return None
        name = dns_name(kind)
        base, n = name, 2
        while name in names:
            name = f"{base[:58]}-{n}"
            n += 1
        names.add(name)

        sel: dict[str, Any] = {}
        for key, value in selector.items():
            k = _camel(str(key))
            at = where("selector", key)
            if k == "endpoint":
                continue
            if k in ("query", "dataPath", "method"):
                sel[k] = str(value).upper() if k == "method" else str(value)
            elif k in ("queryParams", "headers"):
                params = self._string_map(
                    value, lambda *k, key=key: where("selector", key, *k), f"{label}.selector.{key}"
                )
                if params:
                    sel[k] = params
            elif k == "body":
                sel["body"] = value
            elif k == "pathParameters":
                sel["pathParameters"] = self._path_parameters(
                    value, lambda *k, key=key: where("selector", key, *k), f"{label}.selector.{key}"
                )
            elif _has_field(SelectorSpec, _snake(k)):
                sel[k] = value
            else:
                r.warn(
                    at,
                    f"{label}.selector.{key}",
                    "not a selector field of Ocean's custom integration (it ignored it); left out",
                )

        entity = (port.get("entity") or {}).get("mappings") if isinstance(port.get("entity"), dict) else None
        if not isinstance(entity, dict):
            r.refuse(where("port"), f"{label}.port.entity.mappings", "missing")
            return None
        mappings: dict[str, Any] = {}
        for key, value in entity.items():
            if key in ("identifier", "title", "blueprint", "icon", "team"):
                if self._entity_field_ok(key, None, value, where("port", "entity", "mappings", key), label):
                    mappings[key] = value
            elif key in ("properties", "relations") and isinstance(value, dict):
                mappings[key] = {
                    k: v
                    for k, v in value.items()
                    if self._entity_field_ok(key, k, v, where("port", "entity", "mappings", key, k), label)
                }
            else:
                r.warn(
                    where("port", "entity", "mappings", key),
                    f"{label}.port.entity.mappings.{key}",
                    "not an entity field; left out",
                )
        spec: dict[str, Any] = {"sourceRef": {"name": self.source_name}, "kind": kind}
        if sel:
            spec["selector"] = sel
        spec["mappings"] = mappings
        if port.get("itemsToParse"):
            spec["itemsToParse"] = str(port["itemsToParse"])
        items_name = port.get("itemsToParseName")
        if items_name is not None and str(items_name) != "item":
            if _has_field(SelectorSpec, "items_to_parse_name"):
                spec.setdefault("selector", {})["itemsToParseName"] = str(items_name)
            else:
                r.warn(
                    where("port", "itemsToParseName"),
                    f"{label}.port.itemsToParseName",
                    f"{items_name!r} is not yet supported by this httpsync (each element is exposed as .item): "
                    f"rename .{items_name} to .item in the mappings",
                )
        for key in port:
            if key not in ("entity", "itemsToParse", "itemsToParseName", "itemsToParseTopLevelTransform"):
                r.warn(where("port", key), f"{label}.port.{key}", "not converted (no httpsync equivalent)")
        return {
            "apiVersion": "httpsync.io/v1alpha1",
            "kind": "HttpEndpointMapping",
            "metadata": {"name": name, "namespace": self.namespace},
            "spec": spec,
        }

    def _entity_field_ok(self, key: str, sub: str | None, value: Any, at: str, label: str) -> bool:
        """Whether this httpsync accepts the mapping field (a search query object needs the Port
        sink's pass-through); else a refusal on the field's own line."""
        from pydantic import ValidationError

        from httpsync.api.models import EntityMappingSpec

        probe: dict[str, Any] = {"identifier": ".id", "blueprint": '"b"'}
        probe[key] = {sub: value} if sub is not None else value
        try:
            EntityMappingSpec.model_validate(probe)
        except ValidationError as e:
            name = f"{label}.port.entity.mappings.{key}" + (f".{sub}" if sub is not None else "")
            if isinstance(value, dict):
                self.report.refuse(
                    at, name, "search queries ({combinator, rules}) are not yet supported by this httpsync"
                )
            else:
                self.report.refuse(at, name, e.errors(include_url=False)[0]["msg"])
            return False
        return True

    def _string_map(self, value: Any, at: Callable[..., str], label: str) -> dict[str, str]:
        if value is None:
            return {}
        if not isinstance(value, dict):
            self.report.refuse(at(), label, "must be a map")
            return {}
        out: dict[str, str] = {}
        for k, v in value.items():
            text = _query_value(v)
            if text is None:
                if v is None:
                    self.report.warn(at(k), f"{label}.{k}", "null: Ocean sent no such parameter; left out")
                else:
                    self.report.refuse(
                        at(k), f"{label}.{k}", f"{type(v).__name__} values have no equivalent (give one string)"
                    )
                continue
            if _ANY_REF.search(text):
                self.report.warn(at(k), f"{label}.{k}", "holds an environment reference: sent as written")
            out[str(k)] = text
        return out

    def _path_parameters(self, value: Any, at: Callable[..., str], label: str) -> dict[str, Any]:
        if not isinstance(value, dict):
            self.report.refuse(at(), label, "must be a map of placeholder name to its parameter")
            return {}
        out: dict[str, Any] = {}
        for pname, param in value.items():
            if not isinstance(param, dict) or not param.get("endpoint"):
                self.report.refuse(at(pname), f"{label}.{pname}", "needs an endpoint")
                continue
            p: dict[str, Any] = {}
            for key, v in param.items():
                k = _camel(str(key))
                if k in ("endpoint", "dataPath", "field", "filter"):
                    p[k] = str(v)
                elif k == "method":
                    p[k] = str(v).upper()
                elif k in ("queryParams", "headers"):
                    params = self._string_map(
                        v, lambda *k, pname=pname, key=key: at(pname, key, *k), f"{label}.{pname}.{key}"
                    )
                    if params:
                        p[k] = params
                else:
                    self.report.warn(at(pname, key), f"{label}.{pname}.{key}", "not a path parameter field; left out")
            out[str(pname)] = p
        return out


def _snake(key: str) -> str:
    return re.sub(r"(?<!^)([A-Z])", r"_\1", key).lower()


# --------------------------------------------------------------------------- output


def _secret_doc(bag: SecretBag, namespace: str, hide: bool) -> dict[str, Any]:
    data = {k: (PLACEHOLDER_PREFIX + k if hide else v) for k, v in bag.data.items()}
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": bag.name, "namespace": namespace},
        "type": "Opaque",
        "stringData": data,
    }


def files_of(result: Result, namespace: str, hide_secrets: bool = False) -> dict[str, list[dict[str, Any]]]:
    files: dict[str, list[dict[str, Any]]] = {"source.yaml": [result.source]}
    if result.secrets:
        files["secret.yaml"] = [_secret_doc(s, namespace, hide_secrets) for s in result.secrets]
    for m in result.mappings:
        files[f"mapping-{m['metadata']['name']}.yaml"] = [m]
    return files


def _dump(docs: list[dict[str, Any]]) -> str:
    return yaml.safe_dump_all(docs, sort_keys=False, allow_unicode=True, width=1000)


def _write(directory: Path, files: dict[str, list[dict[str, Any]]]) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    for name, docs in files.items():
        path = directory / name
        path.write_text(_dump(docs), encoding="utf-8")
        if name == "secret.yaml":
            path.chmod(0o600)


def validate(files: dict[str, list[dict[str, Any]]]) -> None:
    """The checks of ``httpsync sync`` (its exit 2): load the manifests, compile every jq."""
    from httpsync.cli.common import check_mappings
    from httpsync.cli.manifests import ManifestError, load_manifests

    with tempfile.TemporaryDirectory(prefix="httpsync-import-") as tmp:
        _write(Path(tmp), files)
        try:
            manifests = load_manifests([tmp])
            check_mappings(manifests, manifests.mappings)
        except ManifestError as e:
            problems = [p.replace(tmp + "/", "") for p in e.problems]
            raise CommandError(
                "the converted manifests are not valid httpsync manifests:\n" + "\n".join(problems), EXIT_INVALID
            ) from None
        except CommandError as e:
            raise CommandError(
                "the converted manifests are not valid httpsync manifests:\n" + e.message.replace(tmp + "/", ""),
                EXIT_INVALID,
            ) from None


def convert(config_path: str, mapping_path: str, namespace: str = "default", name: str | None = None,
            given: Mapping[str, str] | None = None) -> Result:  # fmt: skip
    config = read_env(config_path) if config_path.endswith(".env") else read_yaml(config_path)
    app = read_yaml(mapping_path)
    return Converter(config, app, namespace, name, given or {}).convert()


def _messages(kind: str, lines: list[str]) -> Iterator[str]:
    for line in lines:
        yield f"httpsync: {kind}: {line}"


def run(args: argparse.Namespace) -> int:
    if dns_name(args.namespace) != args.namespace:
        raise CommandError(f"-n {args.namespace!r}: use lower-case letters, digits and '-'", EXIT_INVALID)
    given = read_key_values(args.secret_values) if args.secret_values else {}
    from httpsync.http.redact import register_secret

    for value in given.values():
        register_secret(value)
    result = convert(args.config, args.mapping, args.namespace, args.name, given)
    for bag in result.secrets:
        for value in bag.data.values():
            register_secret(value)
    for line in _messages("warning", result.report.warnings):
        print(line, file=sys.stderr)
    if result.report.refusals:
        raise CommandError("cannot convert (nothing written):\n" + "\n".join(result.report.refusals), EXIT_INVALID)
    files = files_of(result, args.namespace)
    validate(files)
    placeholders = [f"{b.name}: {k} (${{{v}}})" for b in result.secrets for k, v in b.placeholders.items()]
    if args.output_dir:
        out = Path(args.output_dir)
        existing = [n for n in files if (out / n).exists()]
        if existing and not args.force:
            raise CommandError(f"{out}: would overwrite {', '.join(existing)} (use --force)", EXIT_INVALID)
        _write(out, files)
        print(f"wrote {len(files)} files to {out}: " + ", ".join(files), file=sys.stderr)
        for p in placeholders:
            print(f"httpsync: fill in before applying: {p} (or give --secret-values)", file=sys.stderr)
    else:
        shown = files_of(result, args.namespace, hide_secrets=True)
        sys.stdout.write(_dump([doc for docs in shown.values() for doc in docs]))
        if result.secrets:
            print("httpsync: note: the Secrets' values are not printed: use -o DIR to write them", file=sys.stderr)
    return 0
