"""``laxai-operator``: run the operator, or print the CRD it serves."""

from __future__ import annotations

import argparse
import sys

from laxai_operator.crd import render_crd


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="laxai-operator",
        description="Reconciles TrainingJob resources into GPU-scheduled batch/v1 Jobs.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("crd", help="print the TrainingJob CRD (crds/trainingjob.yaml) to stdout")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "crd":
        sys.stdout.write(render_crd())
        return 0
    return 2


if __name__ == "__main__":
    sys.exit(main())
