"""The chart's copies of the CRDs: ``crds/*.yaml`` wrapped in Helm template lines.

    python -m tests.helm.chartcrds [--check]

Helm never upgrades a chart's ``crds/`` folder, so the chart renders the CRDs from
``templates/crds/`` (as cert-manager does): behind ``crds.enabled``, with the chart's labels and,
when ``crds.keep`` is set, ``helm.sh/resource-policy: keep``. Everything else is ``crds/<file>``
byte for byte; ``unwrap`` removes the wrapper again and tests/helm/test_chart.py checks both ways.
"""

from __future__ import annotations

import argparse
import difflib
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SOURCE = REPO / "crds"
TARGET = REPO / "charts" / "httpsync-operator" / "templates" / "crds"

HEAD = (
    "{{- /* Copy of crds/%s wrapped by python -m tests.helm.chartcrds; do not edit. */}}\n"
    "{{- if .Values.crds.enabled }}\n"
)
METADATA = "metadata:\n"
# Inserted right after the top-level ``metadata:`` line of the CRD.
METADATA_WRAPPER = (
    "  labels:\n"
    '    {{- include "httpsync-operator.labels" . | nindent 4 }}\n'
    "  {{- if .Values.crds.keep }}\n"
    "  annotations:\n"
    "    helm.sh/resource-policy: keep\n"
    "  {{- end }}\n"
)
TAIL = "{{- end }}\n"


class WrapError(ValueError):
    pass


def wrap(name: str, text: str) -> str:
    """The chart template for the CRD file ``name`` whose content is ``text``."""
    if "{{" in text or "}}" in text:
        raise WrapError(f"crds/{name} contains '{{{{' or '}}}}', which Helm would read as a template")
    lines = text.splitlines(keepends=True)
    if METADATA not in lines:
        raise WrapError(f"crds/{name} has no top-level 'metadata:' line")
    at = lines.index(METADATA) + 1
    if not text.endswith("\n"):
        raise WrapError(f"crds/{name} does not end with a newline")
    return HEAD % name + "".join(lines[:at]) + METADATA_WRAPPER + "".join(lines[at:]) + TAIL


def unwrap(name: str, template: str) -> str:
    """Inverse of :func:`wrap`: the CRD file content a chart template was made from."""
    head = HEAD % name
    if not template.startswith(head) or not template.endswith(TAIL):
        raise WrapError(f"templates/crds/{name} does not start and end with the wrapper lines")
    body = template[len(head) : -len(TAIL)]
    marker = METADATA + METADATA_WRAPPER
    if body.count(marker) != 1:
        raise WrapError(f"templates/crds/{name} does not have the metadata wrapper exactly once")
    return body.replace(marker, METADATA)


def expected() -> dict[str, str]:
    """Chart template file name -> content, for every CRD in crds/."""
    return {p.name: wrap(p.name, p.read_text()) for p in sorted(SOURCE.glob("*.yaml"))}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.helm.chartcrds", description=__doc__.split("\n")[0])
    parser.add_argument("--check", action="store_true", help="write nothing; exit 1 with a diff if a copy differs")
    args = parser.parse_args(argv)
    want = expected()
    stale = False
    for path in sorted(TARGET.glob("*.yaml")):
        if path.name not in want:
            stale = True
            print(f"{path} has no crds/{path.name}", file=sys.stderr)
            if not args.check:
                path.unlink()
                print(f"removed {path}")
    for name, text in want.items():
        path = TARGET / name
        current = path.read_text() if path.exists() else ""
        if current == text:
            continue
        stale = True
        if args.check:
            sys.stdout.writelines(difflib.unified_diff(current.splitlines(True), text.splitlines(True), str(path)))
        else:
            TARGET.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
            print(f"wrote {path}")
    if args.check and stale:
        print("the chart's CRDs are out of date: run python -m tests.helm.chartcrds", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
