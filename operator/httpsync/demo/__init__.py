"""A small demo API for the examples (see :mod:`httpsync.demo.server`)."""

DEFAULT_PORT = 18080  # here, not in server.py: the CLI's --help reads it without importing aiohttp
