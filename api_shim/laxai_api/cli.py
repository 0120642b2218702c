"""``laxai-api``: serve the REST API with uvicorn."""

from __future__ import annotations

import argparse
import ipaddress
import logging
import socket
import sys

from pydantic import ValidationError

from laxai_api.settings import ApiSettings
from laxai_trainer.settings import env_help

log = logging.getLogger("laxai_api")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="laxai-api",
        description="The LaxAI training REST API (/api/v1/train) over TrainingJobs or local subprocesses.",
        epilog=env_help(ApiSettings),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--backend", choices=["local", "kubernetes"], help="overrides LAXAI_BACKEND")
    parser.add_argument(
        "--host", default="127.0.0.1",
        help="address to bind (default 127.0.0.1; the local backend without auth refuses anything else)",
    )
    parser.add_argument("--port", type=int, default=8000, help="port (default: %(default)s)")
    parser.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"],
                        help="uvicorn log level (default: %(default)s)")
    return parser


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        try:
            return all(ipaddress.ip_address(info[4][0]).is_loopback for info in socket.getaddrinfo(host, None))
        except OSError:
            return False


def bind_refusal(settings: ApiSettings, host: str) -> str | None:
    """Why binding ``host`` is refused, or None: an open local API would run anyone's jobs."""
    if settings.backend == "local" and not settings.auth_enabled and not is_loopback(host):
        return (
            f"refusing to bind {host}: the local backend without API keys only listens on 127.0.0.1; "
            "set LAXAI_AUTH_ENABLED=true and LAXAI_API_KEYS_FILE (or LAXAI_API_KEYS) to serve other hosts"
        )
    return None


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    overrides = {"backend": args.backend} if args.backend else {}
    try:
        settings = ApiSettings(**overrides)
    except ValidationError as exc:
        print(f"laxai-api: invalid settings:\n{exc}", file=sys.stderr)
        return 2
    refusal = bind_refusal(settings, args.host)
    if refusal:
        print(f"laxai-api: {refusal}", file=sys.stderr)
        return 2
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if not settings.auth_enabled:
        log.warning("authentication is off: every caller may act for every tenant")
    from laxai_api.app import create_app

    try:
        app = create_app(settings)
    except (ValueError, OSError) as exc:  # bad keys file, unreachable cluster config
        print(f"laxai-api: {exc}", file=sys.stderr)
        return 2
    import uvicorn

    uvicorn.run(app, host=args.host, port=args.port, log_level=args.log_level)
    return 0


if __name__ == "__main__":
    sys.exit(main())
