"""Change-detection state: what was pushed for each mapping (identifier -> content hash), in SQLite.

- :mod:`.sqlitedb`: one SQLite connection behind an async interface, and the schema;
- :mod:`.sqlite`: the state store (:class:`~httpsync.engine.ports.StateStore`) over it;
- :mod:`.hashing`: the content hash it remembers.
"""
