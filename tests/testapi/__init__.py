"""A real loopback HTTP API for the engine's tests (see :mod:`tests.testapi.server`)."""
