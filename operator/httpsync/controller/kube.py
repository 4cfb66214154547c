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
JSON = "application/json"
PARTIAL_METADATA_LIST = "application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1"


async def load_config() -> client.ApiClient:
    if os.environ.get("KUBERNETES_SERVICE_HOST") and not os.environ.get("KUBECONFIG"):
        config.load_incluster_config()
    else:
        await config.load_kube_config()
    return client.ApiClient()


class KubeApi:
    def __init__(self, api_client: client.ApiClient) -> None:
        self.api_client = api_client
        self.custom = client.CustomObjectsApi(api_client)
        self.core = client.CoreV1Api(api_client)

    @classmethod
    async def create(cls) -> KubeApi:
        return cls(await load_config())

    async def aclose(self) -> None:
        await self.api_client.close()

    async def get(self, plural: str, namespace: str, name: str) -> dict[str, Any] | None:
        try:
            return await self.custom.get_namespaced_custom_object(GROUP, VERSION, namespace, plural, name)
        except ApiException as e:
            if e.status == 404:
                return None
            raise

    async def patch_status(self, plural: str, namespace: str, name: str, status: dict[str, Any]) -> bool:
        """Merge-patch ``status``; False when the object is gone."""
        try:
            await self.custom.patch_namespaced_custom_object_status(
                GROUP, VERSION, namespace, plural, name, {"status": status}, _content_type=MERGE_PATCH
            )
            return True
        except ApiException as e:
            if e.status == 404:
                return False
            raise

    async def read_secret(self, namespace: str, name: str) -> dict[str, str]:
        try:
            secret = await self.core.read_namespaced_secret(name, namespace)
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

    # ConfigMaps as plain dicts (the generated models would copy every binaryData string once more).

    async def _core(
        self, method: str, path: str, *, body: Any = None, query: dict[str, Any] | None = None, accept: str = JSON
    ) -> Any:
        return await self.api_client.call_api(
            path,
            method,
            query_params=[(k, v) for k, v in (query or {}).items() if v is not None],
            header_params={"Accept": accept, "Content-Type": JSON},
            body=body,
            response_types_map={200: "object", 201: "object", 202: "object"},
            auth_settings=["BearerToken"],
            _return_http_data_only=True,
        )

    async def get_config_map(self, namespace: str, name: str) -> dict[str, Any] | None:
        try:
            return await self._core("GET", f"/api/v1/namespaces/{namespace}/configmaps/{name}")
        except ApiException as e:
            if e.status == 404:
                return None
            raise

    async def create_config_map(self, namespace: str, body: dict[str, Any]) -> dict[str, Any]:
        """Create; an ApiException with status 409 when the name is taken."""
        return await self._core("POST", f"/api/v1/namespaces/{namespace}/configmaps", body=body)

    async def replace_config_map(self, namespace: str, body: dict[str, Any]) -> dict[str, Any]:
        """Replace (PUT); with ``metadata.resourceVersion`` set, a 409 when the object changed meanwhile."""
        name = body["metadata"]["name"]
        return await self._core("PUT", f"/api/v1/namespaces/{namespace}/configmaps/{name}", body=body)

    async def delete_config_map(self, namespace: str, name: str) -> bool:
        """Delete; False when it was already gone."""
        try:
            await self._core("DELETE", f"/api/v1/namespaces/{namespace}/configmaps/{name}")
            return True
        except ApiException as e:
            if e.status == 404:
                return False
            raise

    async def list_config_map_metadata(
        self, namespace: str, label_selector: str, *, page: int = 500
    ) -> list[dict[str, Any]]:
        """``metadata`` of the matching ConfigMaps, fetched as metadata only (never their data)."""
        out: list[dict[str, Any]] = []
        token: str | None = None
        while True:
            answer = await self._core(
                "GET",
                f"/api/v1/namespaces/{namespace}/configmaps",
                query={"labelSelector": label_selector, "limit": page, "continue": token},
                accept=PARTIAL_METADATA_LIST,
            )
            out.extend(item["metadata"] for item in answer.get("items") or [])
            token = (answer.get("metadata") or {}).get("continue")
            if not token:
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
