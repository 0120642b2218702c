"""Optional Lease-based leader gate (``LAXAI_LEADER_ELECTION=true``), for more than one replica.

The default deployment is one replica with the ``Recreate`` strategy (see handlers.py). With
the gate, any number of replicas may run (and roll): each waits for the
``coordination.k8s.io/v1`` Lease ``laxai-operator`` in its own namespace before it starts kopf;
the holder renews it every ``renew_every`` seconds, and exits the process (hard, no further
writes) when it has not renewed for ``lease_seconds - renew_every`` seconds — before anyone
else may take the Lease, which requires ``lease_seconds`` without renewal. Every write is
conditional on the Lease's resourceVersion (HTTP 409 on a race), so two candidates cannot
both win. Unlike kopf peering (a pause protocol: a paused operator may still be mid-handler),
the loser never started handling. A standby answers the liveness probe itself so it is not
restarted while it waits. Clock skew between nodes shortens the margin; and should two
operators ever overlap anyway, reconciling is idempotent (see handlers.py).
"""

from __future__ import annotations

import http.server
import json
import logging
import os
import socket
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from kubernetes.client.exceptions import ApiException

log = logging.getLogger(__name__)

LEASE_NAME = "laxai-operator"
SA_NAMESPACE_FILE = "/var/run/secrets/kubernetes.io/serviceaccount/namespace"


def micro_time(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_micro_time(text: str | None) -> datetime | None:
    return datetime.fromisoformat(text.replace("Z", "+00:00")) if text else None


def own_namespace(default: str = "default") -> str:
    try:
        with open(SA_NAMESPACE_FILE, encoding="utf-8") as fh:
            return fh.read().strip() or default
    except OSError:
        return default


class LeaderGate:
    """Acquire, keep and release one Lease (conditional writes only)."""

    def __init__(
        self,
        api: Any,  # kubernetes.client.CoordinationV1Api
        namespace: str,
        identity: str | None = None,
        name: str = LEASE_NAME,
        lease_seconds: int = 15,
        renew_every: float = 5.0,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        if renew_every * 2 > lease_seconds:
            raise ValueError("renew_every must be at most half of lease_seconds")
        self.api = api
        self.namespace = namespace
        self.identity = identity or f"{socket.gethostname()}-{os.getpid()}"
        self.name = name
        self.lease_seconds = lease_seconds
        self.renew_every = renew_every
        self.clock = clock
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # ---- one step each -------------------------------------------------------------

    def _read(self) -> dict[str, Any] | None:
        try:
            return json.loads(self.api.read_namespaced_lease(self.name, self.namespace, _preload_content=False).data)
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise

    def _spec(self, previous: dict[str, Any] | None, now: datetime) -> dict[str, Any]:
        spec = dict(previous or {})
        if spec.get("holderIdentity") != self.identity:
            spec["acquireTime"] = micro_time(now)
            spec["leaseTransitions"] = int(spec.get("leaseTransitions") or 0) + (1 if previous else 0)
        spec.update(holderIdentity=self.identity, leaseDurationSeconds=self.lease_seconds, renewTime=micro_time(now))
        return spec

    def try_acquire(self) -> bool:
        """One attempt: True when this process holds the Lease afterwards."""
        now = self.clock()
        try:
            lease = self._read()
            if lease is None:
                body = {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                        "metadata": {"name": self.name, "namespace": self.namespace}, "spec": self._spec(None, now)}
                self.api.create_namespaced_lease(self.namespace, body, _preload_content=False)
                return True
            spec = lease.get("spec") or {}
            holder = spec.get("holderIdentity")
            renewed = parse_micro_time(spec.get("renewTime"))
            duration = int(spec.get("leaseDurationSeconds") or self.lease_seconds)
            if holder and holder != self.identity and renewed and now < renewed + timedelta(seconds=duration):
                return False  # held and current
            lease["spec"] = self._spec(spec, now)
            self.api.replace_namespaced_lease(self.name, self.namespace, lease, _preload_content=False)
            return True
        except ApiException as exc:
            if exc.status in (409, 422):
                return False  # someone else wrote first
            raise

    def renew(self) -> bool:
        """True when the Lease is still ours and renewed."""
        lease = self._read()
        if lease is None or (lease.get("spec") or {}).get("holderIdentity") != self.identity:
            return False
        lease["spec"] = self._spec(lease["spec"], self.clock())
        try:
            self.api.replace_namespaced_lease(self.name, self.namespace, lease, _preload_content=False)
            return True
        except ApiException as exc:
            if exc.status == 409:
                return False
            raise

    def release(self) -> None:
        """Give the Lease up at shutdown so a standby takes over at once."""
        self._stop.set()
        try:
            lease = self._read()
            if lease and (lease.get("spec") or {}).get("holderIdentity") == self.identity:
                lease["spec"]["holderIdentity"] = None
                lease["spec"]["renewTime"] = micro_time(datetime(1970, 1, 1, tzinfo=UTC))
                self.api.replace_namespaced_lease(self.name, self.namespace, lease, _preload_content=False)
        except Exception as exc:  # best effort: the Lease expires anyway
            log.warning("could not release the leader Lease: %s", exc)

    # ---- loops ---------------------------------------------------------------------

    def acquire(self, retry_every: float = 2.0, stop: threading.Event | None = None) -> bool:
        """Block until the Lease is ours (True) or ``stop`` is set (False)."""
        announced = False
        while not (stop and stop.is_set()):
            try:
                if self.try_acquire():
                    log.info("leader Lease %s/%s acquired by %s", self.namespace, self.name, self.identity)
                    return True
            except Exception as exc:
                log.warning("leader election: %s", exc)
            if not announced:
                log.info("standby: waiting for the leader Lease %s/%s", self.namespace, self.name)
                announced = True
            time.sleep(retry_every)
        return False

    def keep(self, on_lost: Callable[[], None]) -> threading.Thread:
        """Renew in the background; call ``on_lost`` when leadership can no longer be vouched for."""

        def loop() -> None:
            last_ok = time.monotonic()
            deadline = self.lease_seconds - self.renew_every
            while not self._stop.wait(self.renew_every):
                try:
                    ok = self.renew()
                except Exception as exc:
                    log.warning("leader Lease renewal failed: %s", exc)
                    ok = None  # unknown: retry until the deadline
                if ok:
                    last_ok = time.monotonic()
                elif ok is False or time.monotonic() - last_ok > deadline:
                    log.error("leader Lease %s/%s lost: stopping", self.namespace, self.name)
                    on_lost()
                    return

        self._thread = threading.Thread(target=loop, name="laxai-leader", daemon=True)
        self._thread.start()
        return self._thread


class StandbyHealth:
    """Answers GET /healthz with 200 while waiting for the Lease (kopf's endpoint is not up yet)."""

    def __init__(self, port: int, addr: str = "0.0.0.0") -> None:
        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server's name)
                code = 200 if self.path.split("?")[0] == "/healthz" else 404
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                self.wfile.write(b'{"standby": true}' if code == 200 else b"{}")

            def log_message(self, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer((addr, port), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, name="laxai-standby-health", daemon=True)

    def __enter__(self) -> StandbyHealth:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
