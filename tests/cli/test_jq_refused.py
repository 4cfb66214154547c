"""A mapping that reads the operator's environment through jq is an invalid manifest: exit 2 naming
file, object and field, before any request."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from tests.cli.conftest import DemoCopy, Run


@pytest.mark.parametrize(
    ("new", "field", "name"),
    [
        ("email: $ENV.HTTPSYNC_PORT_CLIENT_SECRET", "spec.mappings.properties.email", "$ENV"),
        ("email: env.HOME", "spec.mappings.properties.email", "env"),
        ("email: '[inputs]'", "spec.mappings.properties.email", "inputs"),
        ("email: .email | debug", "spec.mappings.properties.email", "debug"),
    ],
)
def test_refused_jq_builtin_exits_2(
    httpsync: Callable[..., Run], demo_copy: DemoCopy, tmp_path: Path, new: str, field: str, name: str
) -> None:
    demo_copy.edit("users.yaml", "email: .email", new)
    for command in ("sync", "preview"):
        r = httpsync(command, "-f", demo_copy.dir, cwd=tmp_path, env={"HTTPSYNC_PORT_CLIENT_SECRET": "s3cr3t"})
        assert r.code == 2, r.err
        assert f"users.yaml: HttpEndpointMapping users: {field}: uses {name}" in r.err, r.err
        assert "Traceback" not in r.err and "s3cr3t" not in r.err + r.out
    assert not (tmp_path / "httpsync-catalog.db").exists()
