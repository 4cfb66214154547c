"""Where entities go: the built-in sinks (the interface they implement is :mod:`httpsync.engine.ports`)."""

from httpsync.sinks.catalog import Catalog, CatalogSink, default_catalog_path
from httpsync.sinks.null import NullSink

__all__ = ["Catalog", "CatalogSink", "NullSink", "default_catalog_path"]
