"""The ``httpsync`` command line: one module per subcommand, the manifests loader and shared helpers
(see :mod:`httpsync.cli.main`).

A command module defines ``register(subparsers)``, which adds its parser and sets
``handler=<function(args) -> int>`` as a default. Keep heavy imports inside the handler so that
``httpsync --help`` stays fast.
"""


class CommandError(Exception):
    """Stop the command: print ``message`` to stderr and exit with ``code``."""

    def __init__(self, message: str, code: int = 1) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
