"""Progress to the TrainingJob's status subresource: the trainer patches its own status.

Why the trainer writes (rather than the operator reading the pod): the trainer knows its
progress the moment an epoch ends, and one merge patch to the status subresource puts it in
``kubectl get tj`` within about a second (the rate limit below), with no log scraping, no
exec into pods and no extra port. The pod's ServiceAccount is bound to a namespaced Role that
allows only ``patch`` on ``trainingjobs/status`` — least privilege: it can't touch
specs, Jobs or other resources — and the patch carries only ``status.progress`` (without
``progress.status``, which mirrors the phase) and ``status.metrics``; every other status field
is the operator's. The operator reading pods would need pod logs or a sidecar and would lag by
its resync interval, and the trainer would still need to expose its state somewhere.

In the pod it needs no client library: :class:`InClusterStatusApi` makes the one HTTPS call
with the ServiceAccount token (re-read at each call: projected tokens rotate) and CA, so the
trainer image does not carry the ``kubernetes`` package. Outside a pod (development, tests)
the ``kubernetes`` client with KUBECONFIG is used.

Rate limit: at most one patch every ``min_interval`` seconds (2 s); a newer report replaces
one not yet sent, and a background thread sends the latest when the interval allows, so the
last report before a long quiet stretch still arrives within ``min_interval``. A change of
the trainer's phase and the final report are sent at once, synchronously. Nothing here ever
raises into the training loop: API errors are logged (once per kind) and the next report
retries; a 404 (the TrainingJob was deleted) stops reporting.

Cancel or preemption: a SIGTERM does not say why. The answer to a status PATCH is the whole
TrainingJob, spec included, so the reporter notes ``spec.cancel`` from each answer, and
:meth:`KubernetesStatusReporter.cancel_requested` (asked when the stop arrives) sends one no-op
PATCH when none has said so yet: the operator sets nothing but ``spec.cancel`` before it deletes
the Job. No new permission: the same ``patch`` on ``trainingjobs/status``, and a no-op passes
the trainer-status admission policy.
"""

from __future__ import annotations

import json
import logging
import os
import ssl
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from typing import Any

from laxai_trainer.status import Phase, ProgressReport

log = logging.getLogger(__name__)

GROUP = "training.laxai.io"
VERSION = "v1alpha1"
PLURAL = "trainingjobs"
NAME_ENV = "LAXAI_TRAININGJOB_NAME"
NAMESPACE_ENV = "LAXAI_TRAININGJOB_NAMESPACE"
SA_DIR = "/var/run/secrets/kubernetes.io/serviceaccount"
SA_NAMESPACE_FILE = f"{SA_DIR}/namespace"


class StatusApiError(Exception):
    """An HTTP error from the API server; ``status`` is its code (as the kubernetes client's)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"HTTP {status}: {message}")
        self.status = status


class InClusterStatusApi:
    """``patch_namespaced_custom_object_status`` over HTTP(S) with a bearer token; no client library."""

    def __init__(self, base_url: str, token_file: str | None = None, token: str | None = None,
                 ca_file: str | None = None) -> None:
        self.base_url = base_url.rstrip("/")
        self.token_file = token_file
        self.token = token
        self.context = ssl.create_default_context(cafile=ca_file) if base_url.startswith("https") else None

    @classmethod
    def from_pod(cls) -> InClusterStatusApi:
        host = os.environ["KUBERNETES_SERVICE_HOST"]
        port = os.environ.get("KUBERNETES_SERVICE_PORT", "443")
        host = f"[{host}]" if ":" in host else host
        return cls(f"https://{host}:{port}", token_file=f"{SA_DIR}/token", ca_file=f"{SA_DIR}/ca.crt")

    @staticmethod
    def available() -> bool:
        return bool(os.environ.get("KUBERNETES_SERVICE_HOST")) and os.path.exists(f"{SA_DIR}/token")

    def _token(self) -> str | None:
        if self.token_file:
            with open(self.token_file, encoding="utf-8") as fh:
                return fh.read().strip()
        return self.token

    def patch_namespaced_custom_object_status(
        self, group: str, version: str, namespace: str, plural: str, name: str, body: dict[str, Any],
        _request_timeout: float = 10.0,
    ) -> dict[str, Any]:
        url = f"{self.base_url}/apis/{group}/{version}/namespaces/{namespace}/{plural}/{name}/status"
        headers = {"Content-Type": "application/merge-patch+json", "Accept": "application/json"}
        token = self._token()
        if token:
            headers["Authorization"] = f"Bearer {token}"
        request = urllib.request.Request(url, data=json.dumps(body).encode(), method="PATCH", headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=_request_timeout, context=self.context) as resp:
                return json.loads(resp.read() or b"{}")
        except urllib.error.HTTPError as exc:
            raise StatusApiError(exc.code, exc.read().decode(errors="replace")[:500]) from exc


def patch_body(report: ProgressReport) -> dict[str, Any]:
    """The merge patch for one report: status.progress (minus its phase mirror) and status.metrics."""
    wire = report.model_dump(mode="json", by_alias=True)
    progress = {k: v for k, v in wire["progress"].items() if k != "status"}
    status: dict[str, Any] = {"progress": progress}
    if wire.get("metrics") is not None:
        status["metrics"] = wire["metrics"]
    return {"status": status}


class KubernetesStatusReporter:
    """Merge-patches ``status.progress`` / ``status.metrics`` of one TrainingJob, rate-limited."""

    def __init__(
        self,
        name: str,
        namespace: str,
        api: Any,
        min_interval: float = 2.0,
        request_timeout: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.name = name
        self.namespace = namespace
        self.api = api  # a kubernetes.client.CustomObjectsApi
        self.min_interval = min_interval
        self.request_timeout = request_timeout
        self.clock = clock
        self._cond = threading.Condition()
        self._send_lock = threading.Lock()
        self._pending: dict[str, Any] | None = None
        self._last_sent = float("-inf")
        self._last_phase: Phase | None = None
        self._stopped = False
        self._warned: set[str] = set()
        self._thread: threading.Thread | None = None
        self._cancel = False  # spec.cancel seen in a PATCH answer (it cannot be undone: CRD rule)
        self.sent = 0  # patches that reached the API server

    @classmethod
    def from_env(cls, **kwargs: Any) -> KubernetesStatusReporter:
        """The TrainingJob from the env; in a pod its ServiceAccount, else the kubernetes client (KUBECONFIG)."""
        name = os.environ.get(NAME_ENV)
        if not name:
            raise RuntimeError(f"{NAME_ENV} is not set")
        namespace = os.environ.get(NAMESPACE_ENV)
        if not namespace and os.path.exists(SA_NAMESPACE_FILE):
            with open(SA_NAMESPACE_FILE, encoding="utf-8") as fh:
                namespace = fh.read().strip()
        if not namespace:
            raise RuntimeError(f"{NAMESPACE_ENV} is not set")
        if InClusterStatusApi.available():
            return cls(name, namespace, InClusterStatusApi.from_pod(), **kwargs)
        import kubernetes

        kubernetes.config.load_kube_config()
        return cls(name, namespace, kubernetes.client.CustomObjectsApi(), **kwargs)

    # ---- the Reporter protocol ----------------------------------------------------------

    def report(self, report: ProgressReport) -> None:
        try:
            body = patch_body(report)
            phase = report.progress.status
            urgent = phase != self._last_phase or phase.terminal
            self._last_phase = phase
            with self._cond:
                if self._stopped:
                    return
                self._pending = body
                if not urgent:
                    self._ensure_thread()
                    self._cond.notify()
                    return
            self.flush()
        except Exception as exc:  # never into the training loop
            self._warn("report", exc)

    def flush(self) -> None:
        """Send the pending report now (synchronously)."""
        with self._send_lock:
            with self._cond:
                body, self._pending = self._pending, None
            if body is not None:
                self._send(body)

    def close(self) -> None:
        self.flush()
        with self._cond:
            self._stopped = True
            self._cond.notify_all()

    def cancel_requested(self, timeout: float = 5.0) -> bool:
        """Whether the TrainingJob's ``spec.cancel`` is set: from the last PATCH answer, else one
        no-op PATCH now (at most ``timeout`` seconds; an error counts as no cancel). Never raises."""
        if not self._cancel:
            with self._send_lock:
                self._patch({"status": {}}, timeout)
        return self._cancel

    # ---- internals --------------------------------------------------------------------

    def _ensure_thread(self) -> None:
        if self._thread is None or not self._thread.is_alive():
            self._thread = threading.Thread(target=self._loop, name="laxai-k8s-reporter", daemon=True)
            self._thread.start()

    def _loop(self) -> None:
        while True:
            with self._cond:
                while self._pending is None and not self._stopped:
                    self._cond.wait()
                if self._stopped:
                    return
                wait = self._last_sent + self.min_interval - self.clock()
                if wait > 0:
                    self._cond.wait(timeout=wait)  # a newer report may replace the pending one meanwhile
                    continue
            self.flush()

    def _send(self, body: dict[str, Any]) -> None:
        self._last_sent = self.clock()
        if self._patch(body, self.request_timeout):
            self.sent += 1

    def _patch(self, body: dict[str, Any], timeout: float) -> bool:
        """One PATCH; notes spec.cancel from the answer. False (logged) on an error."""
        try:
            answer = self.api.patch_namespaced_custom_object_status(
                GROUP, VERSION, self.namespace, PLURAL, self.name, body, _request_timeout=timeout
            )
            if isinstance(answer, dict) and (answer.get("spec") or {}).get("cancel") is True:
                self._cancel = True
            return True
        except Exception as exc:
            if getattr(exc, "status", None) == 404:
                log.warning("TrainingJob %s/%s is gone: progress reporting stops", self.namespace, self.name)
                with self._cond:
                    self._stopped = True
                return False
            self._warn(f"patch-{getattr(exc, 'status', type(exc).__name__)}", exc)
            return False

    def _warn(self, kind: str, exc: Exception) -> None:
        level = logging.DEBUG if kind in self._warned else logging.WARNING
        self._warned.add(kind)
        log.log(level, "could not report progress to TrainingJob %s/%s: %s", self.namespace, self.name, exc)
