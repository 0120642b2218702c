"""Run ``KubeEmulator`` in its own thread and event loop on 127.0.0.1, with test helpers.

Sync code (the ``kubernetes`` client, FastAPI's TestClient, ``kopf.testing.KopfRunner``)
and async code (any other loop) can all talk to it over HTTP. The helpers below read
and write the store directly — no HTTP — by running on the emulator's loop, so they are
thread-safe and their changes reach open watches like any API write.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import copy
import pathlib
import tempfile
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

import aiohttp.web
import yaml

from tests.support.kinds import TRAININGJOB_CRD, load_crds
from tests.support.kube_emulator import InjectedFailure, KubeEmulator
from tests.support.object_store import Obj, ObjectStore, now_rfc3339

T = TypeVar("T")
TRAININGJOBS = "training.laxai.io/v1alpha1/trainingjobs"
JOBS = "batch/v1/jobs"
PODS = "v1/pods"


class ThreadedKubeEmulator:
    """The emulator, served from a background thread. Use as a context manager.

    ``url``, ``kubeconfig_path`` and ``api_client()`` point clients at it;
    ``emulator`` is the underlying ``KubeEmulator`` (kmock API: ``objects``, ``requests``,
    reactions) — touch it from tests only through ``call()`` or the helpers.
    """

    def __init__(self, crd_paths: Iterable[str | pathlib.Path] = (TRAININGJOB_CRD,), *,
                 workdir: str | pathlib.Path | None = None, **emulator_options: Any) -> None:
        self._crds = load_crds(crd_paths)
        self._options = emulator_options
        self._workdir = pathlib.Path(workdir) if workdir else None
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._stop: asyncio.Event | None = None
        self._startup_error: BaseException | None = None
        self.emulator: KubeEmulator
        self.url = ""
        self.kubeconfig_path = pathlib.Path()

    # ------------------------------------------------------------ lifecycle

    def __enter__(self) -> ThreadedKubeEmulator:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self, timeout: float = 30) -> None:
        self._thread = threading.Thread(target=self._run, name="kube-emulator", daemon=True)
        self._thread.start()
        if not self._ready.wait(timeout):
            raise RuntimeError(f"the Kubernetes emulator did not start within {timeout}s")
        if self._startup_error is not None:
            raise RuntimeError("the Kubernetes emulator failed to start") from self._startup_error
        if self._workdir is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="kube-emulator-")
            self._workdir = pathlib.Path(self._tmp.name)
        self.kubeconfig_path = self._workdir / "kubeconfig"
        self.kubeconfig_path.write_text(yaml.safe_dump(self.kubeconfig()))

    def stop(self, timeout: float = 30) -> None:
        if self._loop is not None and self._stop is not None and self._thread is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
            self._thread.join(timeout)
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    def _run(self) -> None:
        self._loop = asyncio.new_event_loop()
        try:
            self._loop.run_until_complete(self._serve())
        except BaseException as e:  # surfaced to start() or kept for the fixture to report
            self._startup_error = e
            self._ready.set()
        finally:
            self._loop.close()

    async def _serve(self) -> None:
        self._stop = asyncio.Event()
        self.emulator = KubeEmulator(crds=self._crds, **self._options)
        async with self.emulator:
            runner = aiohttp.web.ServerRunner(aiohttp.web.Server(self.emulator), handle_signals=False,
                                              shutdown_timeout=1)
            await runner.setup()
            site = aiohttp.web.TCPSite(runner, "127.0.0.1", 0)
            await site.start()
            host, port = runner.addresses[0][:2]
            self.url = f"http://{host}:{port}"
            self._ready.set()
            try:
                await self._stop.wait()
            finally:
                self.emulator.close_watches()
                await asyncio.sleep(0.05)  # let the watch streams end cleanly
                await runner.cleanup()

    @property
    def access(self) -> Any:
        """The emulator's ``tests.support.access.AccessControl`` (None: every request is allowed)."""
        return self._options.get("access")

    @property
    def store(self) -> ObjectStore:
        """The emulator's state (``tests.support.object_store``): use it only inside ``call()``."""
        return self.emulator.store

    # ------------------------------------------------------------ client configuration

    def kubeconfig(self, namespace: str = "default", token: str | None = None) -> dict[str, Any]:
        """A kubeconfig; without ``token`` it has no credentials (anonymous, when access control is on)."""
        return {
            "apiVersion": "v1", "kind": "Config", "current-context": "kube-emulator", "preferences": {},
            "clusters": [{"name": "kube-emulator", "cluster": {"server": self.url}}],
            "users": [{"name": "kube-emulator", "user": {"token": token} if token else {}}],
            "contexts": [{"name": "kube-emulator", "context": {
                "cluster": "kube-emulator", "user": "kube-emulator", "namespace": namespace}}],
        }

    def configuration(self, token: str | None = None) -> Any:
        import kubernetes.client

        config = kubernetes.client.Configuration()
        config.host = self.url
        if token:
            config.api_key = {"authorization": token}
            config.api_key_prefix = {"authorization": "Bearer"}
        return config

    def api_client(self, token: str | None = None) -> Any:
        """A ``kubernetes.client.ApiClient`` for this emulator (close it, or use ``with``)."""
        import kubernetes.client

        return kubernetes.client.ApiClient(self.configuration(token))

    # ------------------------------------------------------------ running code on the emulator's loop

    def call(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run ``fn(*args, **kwargs)`` on the emulator's loop and return its result (thread-safe)."""
        assert self._loop is not None, "the emulator is not running"
        if threading.current_thread() is self._thread:  # e.g. from a kmock reaction callback
            return fn(*args, **kwargs)

        async def run() -> T:
            return fn(*args, **kwargs)

        future: concurrent.futures.Future[T] = asyncio.run_coroutine_threadsafe(run(), self._loop)
        return future.result(timeout=30)

    # ------------------------------------------------------------ store helpers (no HTTP)

    def get(self, resource: str, namespace: str | None, name: str) -> Obj | None:
        """A copy of the live object, or None. ``resource``: 'batch/v1/jobs', 'v1/pods', 'Job', 'tj'…"""
        def read() -> Obj | None:
            obj = self.store.current(self.store.kind(resource), namespace, name)
            return copy.deepcopy(obj) if obj is not None else None
        return self.call(read)

    def objects(self, resource: str, namespace: str | None = None, label_selector: str | None = None,
                field_selector: str | None = None) -> list[Obj]:
        """Copies of the live objects of a kind, optionally filtered like a list request."""
        params = {k: v for k, v in (("labelSelector", label_selector), ("fieldSelector", field_selector)) if v}

        def read() -> list[Obj]:
            listed = self.store.list_objects(self.store.kind(resource), namespace, params)
            return copy.deepcopy(listed["items"])
        return self.call(read)

    def history(self, resource: str, namespace: str | None, name: str) -> list[Obj | None]:
        """Every stored version of an object, oldest first; None marks a deletion."""
        def read() -> list[Obj | None]:
            kind = self.store.kind(resource)
            key = (kind.resource, namespace if kind.namespaced else None, name)
            if key not in self.emulator.objects:
                return []
            return [None if v is None else copy.deepcopy(v.raw) for v in self.emulator.objects[key].history]
        return self.call(read)

    def create(self, resource: str, body: Obj, namespace: str | None = None) -> Obj:
        """Create with full API semantics except that ``status`` is kept (test setup)."""
        return self.call(lambda: copy.deepcopy(self.store.create_object(
            self.store.kind(resource), namespace, body, privileged=True)))

    def patch(self, resource: str, namespace: str | None, name: str, patch: Obj | list[Any], *,
              status: bool = False) -> Obj:
        """Merge-patch (JSON-patch for a list) an object; ``status=True`` writes ``/status``."""
        def write() -> Obj:
            kind = self.store.kind(resource)
            patch_type = "json" if isinstance(patch, list) else "merge"
            return copy.deepcopy(self.store.patch_object(
                kind, namespace, name, patch_type, patch, subresource="status" if status else None))
        return self.call(write)

    def patch_status(self, resource: str, namespace: str | None, name: str, status: Obj) -> Obj:
        """Merge ``status`` into the object's status, as a controller writing /status would."""
        return self.patch(resource, namespace, name, {"status": status}, status=True)

    def delete(self, resource: str, namespace: str | None, name: str, propagation: str | None = None) -> Obj:
        return self.call(lambda: copy.deepcopy(self.store.delete_object(
            self.store.kind(resource), namespace, name, propagation=propagation)))

    def inject_failure(self, method: str | None, path: str, status: int = 500, times: int | None = 1,
                       message: str = "injected failure") -> InjectedFailure:
        """The next ``times`` requests whose path?query matches the regex ``path`` fail with ``status``.

        E.g. ``inject_failure("PATCH", r"/trainingjobs/tj1/status$", 500, times=2)``; the result's
        ``hits`` counts the failed requests; ``times=None`` fails until ``clear_failures()``.
        """
        return self.call(self.emulator.inject_failure, method, path, status, times, message)

    def clear_failures(self) -> None:
        self.call(self.emulator.failures.clear)

    def set_pod_log(self, namespace: str, pod: str, text: str) -> None:
        """What ``GET pods/<pod>/log`` answers from now on."""
        def write() -> None:
            self.store.pod_logs[(namespace, pod)] = text
        self.call(write)

    # ------------------------------------------------------------ Job controller stand-ins

    def set_job_status(self, namespace: str, name: str, status: Obj) -> Obj:
        """Merge ``status`` into a Job's status (e.g. {'active': 1} or a Failed condition)."""
        return self.patch_status(JOBS, namespace, name, status)

    def make_pod_for_job(self, job: Obj | str | Any, namespace: str | None = None, *, phase: str = "Running",
                         name: str | None = None, container_statuses: list[Obj] | None = None,
                         status: Obj | None = None) -> Obj:
        """Create a pod as the Job controller would: its labels, ownerReference and template.

        ``job`` is the Job (a dict or a V1Job) or its name (then ``namespace`` is needed). ``status`` is
        merged over ``{'phase': phase, 'containerStatuses': container_statuses}``.
        """
        if not isinstance(job, dict | str):  # a typed kubernetes.client model, e.g. V1Job
            import kubernetes.client

            job = kubernetes.client.ApiClient().sanitize_for_serialization(job)
        if isinstance(job, str):
            assert namespace is not None, "namespace is needed when the Job is given by name"
            found = self.get(JOBS, namespace, job)
            if found is None:
                raise KeyError(f"Job {namespace}/{job} not found")
            job = found
        meta = job["metadata"]
        template = copy.deepcopy(job.get("spec", {}).get("template", {}))
        labels = dict((template.get("metadata") or {}).get("labels") or {})
        labels.update({"batch.kubernetes.io/job-name": meta["name"], "job-name": meta["name"],
                       "batch.kubernetes.io/controller-uid": meta["uid"], "controller-uid": meta["uid"]})
        spec = template.get("spec") or {"containers": []}
        pod_status: Obj = {"phase": phase}
        if phase in ("Running", "Succeeded", "Failed"):
            pod_status["startTime"] = now_rfc3339()
        if container_statuses is None and phase in ("Running", "Succeeded", "Failed"):
            state = ({"running": {"startedAt": now_rfc3339()}} if phase == "Running" else
                     {"terminated": {"exitCode": 0 if phase == "Succeeded" else 1,
                                     "reason": "Completed" if phase == "Succeeded" else "Error"}})
            container_statuses = [{"name": c.get("name", "main"), "state": state} for c in spec["containers"]]
        if container_statuses is not None:
            pod_status["containerStatuses"] = [_complete_container_status(cs, spec) for cs in container_statuses]
        pod_status.update(status or {})
        body = {
            "metadata": {
                "generateName": f"{meta['name']}-", "namespace": meta["namespace"], "labels": labels,
                "annotations": dict((template.get("metadata") or {}).get("annotations") or {}),
                "ownerReferences": [{"apiVersion": "batch/v1", "kind": "Job", "name": meta["name"],
                                     "uid": meta["uid"], "controller": True, "blockOwnerDeletion": True}],
            },
            "spec": spec,
            "status": pod_status,
        }
        if name:
            body["metadata"]["name"] = name
        return self.create(PODS, body)

    def set_pod_status(self, namespace: str, name: str, status: Obj) -> Obj:
        return self.patch_status(PODS, namespace, name, status)

    # ------------------------------------------------------------ waiting

    def wait_for(self, predicate: Callable[[], T], timeout: float = 10, interval: float = 0.05,
                 message: str = "condition") -> T:
        """Poll ``predicate`` until it returns something truthy; that value is returned."""
        deadline = time.monotonic() + timeout
        while True:
            value = predicate()
            if value:
                return value
            if time.monotonic() > deadline:
                raise TimeoutError(f"{message} not met within {timeout}s")
            time.sleep(interval)

    def wait_for_object(self, resource: str, namespace: str | None, name: str,
                        predicate: Callable[[Obj], Any] = bool, timeout: float = 10) -> Obj:
        """Wait until the object exists and ``predicate(obj)`` is truthy; return the object."""
        def check() -> Obj | None:
            obj = self.get(resource, namespace, name)
            return obj if obj is not None and predicate(obj) else None
        return self.wait_for(check, timeout, message=f"{resource} {namespace}/{name}")

    @property
    def internal_errors(self) -> list[BaseException]:
        """Emulator bugs (answered as 500): the fixture fails the test when there are any."""
        return list(self.emulator.internal_errors)


def _complete_container_status(given: Obj, pod_spec: Obj) -> Obj:
    """Fill what the kubelet always reports (the kubernetes client's models require it)."""
    containers = pod_spec.get("containers") or [{}]
    name = given.get("name") or containers[0].get("name", "main")
    spec = next((c for c in containers if c.get("name") == name), containers[0])
    state = given.get("state") or {"waiting": {"reason": "ContainerCreating"}}
    return {"name": name, "image": spec.get("image", ""), "imageID": "", "restartCount": 0,
            "ready": "running" in state, "started": "running" in state, **given, "state": state}
