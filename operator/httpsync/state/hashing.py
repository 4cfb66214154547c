"""The content hash the change-detection state remembers for each entity."""

from __future__ import annotations

import hashlib

from httpsync.engine import jsoncodec
from httpsync.engine.types import Entity


def canonical_json(entity: Entity) -> str:
    """The canonical JSON the content hash is taken of (see :func:`jsoncodec.canonical`)."""
    return jsoncodec.canonical(entity).decode()


def entity_hash(entity: Entity) -> bytes:
    """Content hash of an entity: blake2b-128 of its canonical JSON (:func:`jsoncodec.canonical`:
    orjson with sorted keys, compact, UTF-8; the stdlib's ``sort_keys`` ASCII form for what orjson
    refuses). Changing this form changes every hash: the first sync after such a change pushes
    every entity once."""
    return hashlib.blake2b(jsoncodec.canonical(entity), digest_size=16).digest()
