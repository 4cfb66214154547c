"""The one step that writes status: a merge patch of the fields a status model sets.

Only fields set on the model are sent; a field set to None is sent as null, which removes it.
``conditions`` is always sent whole (merge patches replace lists).
"""

from __future__ import annotations

from typing import Any

from httpsync.api.models import HttpEndpointMappingStatus, HttpSourceStatus
from httpsync.controller.kube import KubeApi
from httpsync.controller.objects import MAPPINGS, SOURCES, Meta


def wire(status: HttpSourceStatus | HttpEndpointMappingStatus) -> dict[str, Any]:
    """The merge-patch body of a status model: its set fields, each written whole (a nested object
    such as ``lastSync`` replaces the old one entirely, zero counters included)."""
    full = status.model_dump(by_alias=True, mode="json", exclude_none=True)
    fields = type(status).model_fields
    keys = [fields[name].alias or name for name in status.model_fields_set]
    return {key: full.get(key) for key in keys}


class StatusWriter:
    def __init__(self, kube: KubeApi) -> None:
        self.kube = kube

    async def source(self, meta: Meta, status: HttpSourceStatus | None) -> bool:
        """Patch a source's status; False when the object is gone (or nothing to write)."""
        if status is None:
            return False
        return await self.kube.patch_status(SOURCES, meta.namespace, meta.name, wire(status))

    async def mapping(self, meta: Meta, status: HttpEndpointMappingStatus | None) -> bool:
        if status is None:
            return False
        return await self.kube.patch_status(MAPPINGS, meta.namespace, meta.name, wire(status))
