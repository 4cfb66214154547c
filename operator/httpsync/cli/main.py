"""The ``httpsync`` command line.

The parser is assembled from a registry of subcommand modules (:data:`COMMAND_MODULES`); each
module's ``register(subparsers)`` adds its subcommand and a ``handler(args) -> int``. To add a
subcommand, write ``httpsync/cli/<name>.py`` and list it here.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
from collections.abc import Sequence

from httpsync.cli import CommandError
from httpsync.http.redact import RedactingFormatter, redact

# name -> (module, one-line help). A module is imported only when its command runs (or is asked for
# help): `httpsync --help` and the start of `httpsync sync` do not pay for kopf, the Kubernetes client
# or the models of commands they do not run. tests/cli/test_startup.py checks the help lines against the modules.
COMMANDS: dict[str, tuple[str, str]] = {
    "sync": ("httpsync.cli.sync", "sync every mapping once into its source's sink (the embedded catalog by default)"),
    "preview": ("httpsync.cli.preview", "fetch and map without writing; show entities and mapping errors"),
    "catalog": ("httpsync.cli.catalog", "read the embedded catalog"),
    "demo-api": ("httpsync.cli.demo", "serve the demo API of examples/port-overview/"),
    "run": ("httpsync.cli.run", "run the operator against the current kubeconfig (or in-cluster config)"),
    "cluster": (
        "httpsync.cli.cluster",
        "start or stop a local control plane (etcd + kube-apiserver built from Go modules)",
    ),
    "import": ("httpsync.cli.importer", "convert another tool's configuration into httpsync manifests"),
}
COMMAND_MODULES: list[str] = [module for module, _ in COMMANDS.values()]


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The whole parser; with ``only``, just that command's module is imported and registered (the
    others appear in the help by name and help line)."""
    parser = argparse.ArgumentParser(
        prog="httpsync",
        description="Turn any HTTP/REST API into software-catalog entities.",
    )
    parser.add_argument("-v", "--verbose", action="count", default=0, help="log more (-v: info, -vv: debug), to stderr")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, (module, help_) in COMMANDS.items():
        if only is None or name == only:
            importlib.import_module(module).register(subparsers)
        else:
            subparsers.add_parser(name, help=help_, add_help=False)
    return parser


def _command_of(argv: Sequence[str]) -> str:
    """The command named in ``argv`` ("" when none is): the first argument that is not an option."""
    for arg in argv:
        if arg == "--":
            break
        if not arg.startswith("-"):
            return arg
    return ""
class _TerminalFormatter(RedactingFormatter):
    """Redacted, and what a terminal would act on (ANSI escapes from API data) written out."""

    def format(self, record: logging.LogRecord) -> str:
        from httpsync.cli.common import terminal_safe

        return terminal_safe(super().format(record), newlines=True)


def _setup_logging(verbosity: int) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_TerminalFormatter("%(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.DEBUG if verbosity > 1 else logging.INFO if verbosity == 1 else logging.WARNING)
    if verbosity < 2:
        logging.getLogger("httpx").setLevel(logging.INFO if verbosity == 1 else logging.WARNING)
        logging.getLogger("httpcore").setLevel(logging.WARNING)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser(only=_command_of(argv)).parse_args(argv)
    _setup_logging(args.verbose)
    from httpsync.cli.common import configure_workers

    configure_workers(args)
    try:
        return int(args.handler(args))
    except CommandError as e:
        from httpsync.cli.common import terminal_safe

        for line in e.message.splitlines():
            print(f"httpsync: {terminal_safe(redact(line))}", file=sys.stderr)
        return e.code
    except KeyboardInterrupt:
        print("httpsync: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `httpsync ... | head`
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1


if __name__ == "__main__":
    sys.exit(main())
