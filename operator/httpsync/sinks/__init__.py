"""Where entities go: the sink interface and the built-in sinks."""

from httpsync.sinks.base import ListableSink, MappingState, Sink, SinkReport, StateStore
from httpsync.sinks.catalog import (
    Catalog,
    CatalogSink,
    SqliteMappingState,
    SqliteStateStore,
    default_catalog_path,
    entity_hash,
)
from httpsync.sinks.null import NullSink

__all__ = [
    "Catalog",
    "CatalogSink",
    "ListableSink",
    "MappingState",
    "NullSink",
    "Sink",
    "SinkReport",
    "SqliteMappingState",
    "SqliteStateStore",
    "StateStore",
    "default_catalog_path",
    "entity_hash",
]
