"""A small demo API for the examples (see :mod:`httpsync.demo.server`)."""
