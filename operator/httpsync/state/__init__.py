"""Change-detection state: what was pushed for each mapping (identifier -> content hash), in SQLite."""
