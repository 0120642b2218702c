"""``laxai-operator``: run the operator, or print the CRD it serves."""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import sys

from pydantic import ValidationError

from laxai_operator.crd import render_crd
from laxai_operator.identity import peering_identity
from laxai_operator.leader import LeaderGate, StandbyHealth, own_namespace
from laxai_operator.settings import OperatorSettings
from laxai_trainer.settings import env_help

#: Exit status when the leader Lease is lost.
LEADERSHIP_LOST = 70


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="laxai-operator",
        description="Reconciles TrainingJob resources into GPU-scheduled batch/v1 Jobs.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("crd", help="print the TrainingJob CRD (crds/trainingjob.yaml) to stdout")
    run = sub.add_parser(
        "run",
        help="run the operator (kopf, standalone; optional Lease leader gate)",
        description=(
            "Run the operator: kopf with the laxai_operator.handlers module, peering off (one replica), "
            "JSON logs, a liveness endpoint on LAXAI_HEALTH_PORT (/healthz), Prometheus metrics on "
            "LAXAI_METRICS_PORT (/metrics), watching LAXAI_WATCH_NAMESPACES (all when empty). "
            "With LAXAI_LEADER_ELECTION=true it first waits for the leader Lease. "
            "Credentials: in-cluster, else KUBECONFIG."
        ),
        epilog=env_help(OperatorSettings, unread=("backend", "home")),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    run.add_argument("--verbose", action="store_true", help="log at debug level")
    run.add_argument("--log-format", choices=["json", "plain", "full"], default="json", help="log format (default: %(default)s)")
    return parser


def kopf_options(settings: OperatorSettings) -> dict:
    """kopf.run() arguments derived from the settings."""
    options: dict = {"standalone": True}
    if settings.watch_namespaces:
        options["namespaces"] = list(settings.watch_namespaces)
    else:
        options["clusterwide"] = True
    if settings.health_port:
        options["liveness_endpoint"] = f"http://0.0.0.0:{settings.health_port}/healthz"
    return options


def run(args: argparse.Namespace) -> int:
    try:
        settings = OperatorSettings()
    except ValidationError as exc:
        sys.stderr.write(f"laxai-operator: invalid settings (environment LAXAI_*):\n{exc}\n")
        return 2
    import kopf

    kopf.configure(verbose=args.verbose, debug=args.verbose, log_format=kopf.LogFormat[args.log_format.upper()])
    if not args.verbose:
        # kopf logs "Handler '…' succeeded." at INFO for every handler run, event handlers included:
        # several lines per watch event, a fifth of the operator's CPU in a burst. Warnings and
        # errors (failed or retried handlers) still show; our own transitions are logged by us.
        logging.getLogger("kopf.objects").setLevel(logging.WARNING)
    import laxai_operator.handlers  # noqa: F401  (registers the handlers)

    gate = leader_gate(settings) if settings.leader_election else None
    if gate is not None:
        standby = StandbyHealth(settings.health_port) if settings.health_port else contextlib.nullcontext()
        with standby:
            gate.acquire()
        # Lost the Lease: stop at once, mid-handler or not; the pod restarts as a standby.
        gate.keep(on_lost=lambda: os._exit(LEADERSHIP_LOST))
    try:
        kopf.run(identity=peering_identity(), **kopf_options(settings))
    finally:
        if gate is not None:
            gate.release()
    return 0


def leader_gate(settings: OperatorSettings) -> LeaderGate:
    import kubernetes

    from laxai_operator.kube import load_config

    api = kubernetes.client.CoordinationV1Api(load_config())
    return LeaderGate(api, settings.leader_election_namespace or own_namespace())


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "crd":
        sys.stdout.write(render_crd())
        return 0
    if args.command == "run":
        return run(args)
    return 2


if __name__ == "__main__":
    sys.exit(main())
