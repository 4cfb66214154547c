"""jq builtins that read the operator's environment, input or files are refused in every jq field,
naming the field; field access, object keys and strings spelled like them are fine."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from httpsync.api.jqsafety import refused_builtins
from httpsync.api.models import HttpEndpointMappingSpec, HttpSourceSpec
from httpsync.engine.jqutil import compile_jq
from httpsync.engine.mapping import Mapper
from httpsync.errors import InvalidJqError

REFUSED = [
    ("$ENV.HTTPSYNC_PORT_CLIENT_SECRET", "$ENV"),
    ("$ENV", "$ENV"),
    ("env.HOME", "env"),
    ("env | keys", "env"),
    ('"\\(env.HOME)"', "env"),
    ('"a\\("b" + (env | tostring))"', "env"),
    ("[inputs]", "inputs"),
    ("input", "input"),
    ("input_filename", "input_filename"),
    ("$__loc__", "$__loc__"),
    (".a | debug", "debug"),
    ('debug("x")', "debug"),
    (".a | stderr", "stderr"),
    ("halt", "halt"),
    ('"x" | halt_error', "halt_error"),
    ("halt_error(1)", "halt_error"),
    ("{a: env}", "env"),
    ("{(env | tostring): 1}", "env"),
    ("{a: 1, b: 2 | env}", "env"),
    (".[env]", "env"),
    ("..env", "env"),
    ("# comment ends with an escaped backslash \\\\\nenv", "env"),  # jq reads env as code
    ('import "x" as $x; .', "import"),
    ("get_search_list", "get_search_list"),
]


@pytest.mark.parametrize(("expr", "name"), REFUSED)
def test_refused(expr: str, name: str) -> None:
    assert name in refused_builtins(expr)
    with pytest.raises(InvalidJqError, match=rf"selector\.query: jq .* uses .*{name.replace('$', '[$]')}"):
        compile_jq(expr, "selector.query")


ALLOWED = [
    ".env",
    '."env"',
    '.["env"]',
    ".a.env.b",
    '"env"',
    '"$ENV and env and input"',
    "{env: .x}",
    "{env}",
    "{a: 1, env}",
    '{"env": 1}',
    ".environment",
    "environment",  # not a builtin name (jq reports it unknown)
    ".input | .inputs",
    "# a comment naming env and $ENV\n.a",
    "# jq 1.7.1 continues a comment after a backslash \\\nenv",
    '@base64 "\\(.env)"',
    ".debugging",
]


@pytest.mark.parametrize("expr", ALLOWED)
def test_allowed(expr: str) -> None:
    assert refused_builtins(expr) == []


def _mapping(**overrides: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "sourceRef": {"name": "s"},
        "kind": "/items",
        "selector": {"query": "true", "dataPath": ".items"},
        "mappings": {"identifier": ".id", "blueprint": '"b"', "properties": {"env": ".env", "label": '"env"'}},
    }
    for path, value in overrides.items():
        target = doc
        *parents, last = path.split(".")
        for p in parents:
            target = target.setdefault(p, {})
        target[last] = value
    return doc


@pytest.mark.parametrize(
    ("path", "loc"),
    [
        ("selector.query", "selector.query"),
        ("selector.dataPath", "selector.dataPath"),
        ("mappings.identifier", "mappings.identifier"),
        ("mappings.title", "mappings.title"),
        ("mappings.properties.leak", "mappings.properties.leak"),
        ("mappings.relations.owner", "mappings.relations.owner"),
        ("itemsToParse", "itemsToParse"),
        ("pagination.cursorPath", "pagination.cursorPath"),
    ],
)
def test_every_jq_field_of_a_mapping_is_checked(path: str, loc: str) -> None:
    doc = _mapping(**{path: "$ENV.SECRET"})
    if path.startswith("pagination"):
        doc["pagination"]["type"] = "cursor"
    with pytest.raises(ValidationError) as info:
        HttpEndpointMappingSpec.model_validate(doc)
    (error,) = info.value.errors()
    assert ".".join(map(str, error["loc"])) == loc
    assert "$ENV" in error["msg"]


def test_path_parameters_and_source_pagination_are_checked() -> None:
    doc = _mapping(
        kind="/t/{id}/c",
        **{"selector.pathParameters": {"id": {"endpoint": "/t", "field": "env.X", "filter": "true"}}},
    )
    with pytest.raises(ValidationError, match=r"pathParameters\.id\.field"):
        HttpEndpointMappingSpec.model_validate(doc)
    with pytest.raises(ValidationError, match=r"pagination\.totalPath"):
        HttpSourceSpec.model_validate(
            {"baseUrl": "http://127.0.0.1:1", "pagination": {"type": "offset", "totalPath": "$ENV.X"}}
        )


def test_a_valid_mapping_with_env_spelled_as_data_maps() -> None:
    spec = HttpEndpointMappingSpec.model_validate(_mapping())
    page = Mapper.from_spec(spec).map_page([{"id": 1, "env": "prod"}])
    assert page.entities[0]["properties"] == {"env": "prod", "label": "env"}


def test_jq_runs_with_an_empty_environment_even_past_validation(monkeypatch: pytest.MonkeyPatch) -> None:
    """Defence in depth: a program that reaches jq without the check (an engine caller that built
    the spec itself) still sees no environment."""
    monkeypatch.setenv("HTTPSYNC_TEST_SECRET", "s3cr3t")
    from httpsync.engine import jqutil

    prog = jqutil._compile("[$ENV, env, (try input catch .)]")
    assert prog.input_value(None).first() == [{}, {}, "input is not allowed in httpsync mappings"]


def test_the_operator_keeps_such_a_mapping_as_an_invalid_spec_naming_the_field() -> None:
    from httpsync.controller.objects import MappingObject

    body = {
        "apiVersion": "httpsync.io/v1alpha1",
        "kind": "HttpEndpointMapping",
        "metadata": {"name": "users", "namespace": "team-a", "uid": "u1", "generation": 1},
        "spec": _mapping(**{"mappings.properties.leak": "$ENV.HTTPSYNC_PORT_CLIENT_SECRET"}),
    }
    obj = MappingObject.from_body(body)
    assert obj.spec is None
    assert obj.spec_error is not None
    assert "mappings.properties.leak" in obj.spec_error and "uses $ENV" in obj.spec_error
