"""The operator's own Kubernetes client (kopf's ``patch`` only applies when a handler returns;
a sync loop writes the status of a source and of every mapping, so it needs its own).

A thin layer over kubernetes_asyncio: config loading, status merge patches, Secrets.
"""

from __future__ import annotations

import base64
import os
from typing import Any

from kubernetes_asyncio import client, config
from kubernetes_asyncio.client.exceptions import ApiException

from httpsync.api.models import GROUP, VERSION
from httpsync.errors import SecretError
from httpsync.http.redact import register_secret

MERGE_PATCH = "application/merge-patch+json"


async def load_config() -> client.ApiClient:
    if os.environ.get("KUBERNETES_SERVICE_HOST") and not os.environ.get("KUBECONFIG"):
        config.load_incluster_config()
    else:
        # KUBECONFIG as it is now (kubernetes_asyncio reads its default once, at import).
        await config.load_kube_config(config_file=os.environ.get("KUBECONFIG"))
    return client.ApiClient()


class KubeApi:
    def __init__(self, api_client: client.ApiClient, *, timeout: float = 30.0) -> None:
        self.api_client = api_client
        self.timeout = timeout  # per request: a stalled API server fails the step instead of hanging it
        self.custom = client.CustomObjectsApi(api_client)
        self.core = client.CoreV1Api(api_client)

    @classmethod
    async def create(cls, *, timeout: float = 30.0) -> KubeApi:
        return cls(await load_config(), timeout=timeout)

    async def aclose(self) -> None:
        await self.api_client.close()

    async def get(self, plural: str, namespace: str, name: str) -> dict[str, Any] | None:
        try:
            return await self.custom.get_namespaced_custom_object(
                GROUP, VERSION, namespace, plural, name, _request_timeout=self.timeout
            )
        except ApiException as e:
            if e.status == 404:
                return None
            raise

    async def patch_status(self, plural: str, namespace: str, name: str, status: dict[str, Any]) -> bool:
        """Merge-patch ``status``; False when the object is gone."""
        try:
            await self.custom.patch_namespaced_custom_object_status(
                GROUP, VERSION, namespace, plural, name, {"status": status},
                _content_type=MERGE_PATCH, _request_timeout=self.timeout,
            )  # fmt: skip
            return True
        except ApiException as e:
            if e.status == 404:
                return False
            raise

    async def read_secret(self, namespace: str, name: str) -> dict[str, str]:
        try:
            secret = await self.core.read_namespaced_secret(name, namespace, _request_timeout=self.timeout)
        except ApiException as e:
            if e.status == 404:
                raise SecretError(f"Secret {name} not found in namespace {namespace}") from None
            if e.status == 403:
                raise SecretError(
                    f"the operator may not read Secret {name} in namespace {namespace} (RBAC: secrets get)",
                    reason="SecretForbidden",
                ) from None
            raise
        out: dict[str, str] = {}
        for k, v in (secret.data or {}).items():
            try:
                out[k] = base64.b64decode(v).decode()
            except (ValueError, UnicodeDecodeError):
                continue
            register_secret(out[k])
        return out


class KubeSecrets:
    """SecretResolver over Kubernetes Secrets of one namespace (namespace-local references only).
    Values are read once per sync and never logged."""

    def __init__(self, api: KubeApi, namespace: str) -> None:
        self.api = api
        self.namespace = namespace
        self._cache: dict[str, dict[str, str]] = {}

    async def get(self, name: str, key: str) -> str:
        if name not in self._cache:
            self._cache[name] = await self.api.read_secret(self.namespace, name)
        data = self._cache[name]
        if key not in data:
            raise SecretError(
                f"Secret {name} in namespace {self.namespace} has no key {key!r}"
                + (f" (keys: {', '.join(sorted(data))})" if data else " (it is empty)")
            )
        return data[key]
