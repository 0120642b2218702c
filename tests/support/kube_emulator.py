"""A Kubernetes API server emulator for tests: kmock 0.8's KubernetesEmulator, made faithful.

Plain kmock (see ../shared/KMOCK_NOTES.md) lacks resourceVersion, uid, generation, 201 on
create, selectors, paging, PUT, status subresources, conflicts, garbage collection and
schema checks, and scans its whole request log on every request. ``KubeEmulator``
keeps kmock's object store (``emulator.objects[...]`` with per-object history), its
bundled discovery data and its request DSL (``emulator['get /x'] << 500`` still injects
faults), but serves every Kubernetes request with its own semantics:

- objects get ``uid``, ``creationTimestamp``, ``generation`` (1, then +1 only when
  anything outside metadata/status changes) and a global, monotonic ``resourceVersion``;
  ``generateName``; name/label validation; namespaces are created on first use;
- create → 201; duplicate → 409 AlreadyExists; missing → 404 NotFound; stale
  ``resourceVersion`` on PUT/PATCH or failed delete preconditions → 409 Conflict; all with
  a ``Status`` body (reason, message, details);
- PATCH: JSON patch (a failed ``test`` → 422, as kopf expects), merge patch, strategic
  merge patch for built-in kinds (served as a merge patch; 415 for custom resources, as
  in Kubernetes); server-side apply → 415;
- kinds with a ``status`` subresource: writes to the object ignore ``status``, writes to
  ``/status`` change only ``status``; create drops ``status`` (pods start ``Pending``);
- DELETE honours finalizers (``deletionTimestamp``, removed when the last finalizer goes)
  and ``propagationPolicy``/``orphanDependents``/preconditions; dependents are garbage
  collected by ``ownerReferences`` synchronously (TrainingJob → Job → Pod). As in
  Kubernetes, deleting a batch/v1 Job *without* a propagationPolicy orphans its pods
  (with the same warning header); delete-collection; deleting a namespace deletes its
  contents;
- list: ``labelSelector`` (=, ==, !=, in, notin, exists, !exists), ``fieldSelector``
  (=, ==, != on any dotted path, e.g. metadata.name, status.phase), ``limit`` + ``continue``
  in (namespace, name) order; ``metadata.resourceVersion`` on every list;
- watch: newline-delimited ADDED/MODIFIED/DELETED events; ``resourceVersion`` replays
  events after it (410 Gone when older than the retained history); ``sendInitialEvents``
  ends the initial ADDED burst with a BOOKMARK; ``timeoutSeconds``; selector watches see
  ADDED/DELETED when an object starts/stops matching;
- CRDs (``crds/trainingjob.yaml``): the API server's pruning of undeclared fields and
  nulls (a ``Warning`` header, or 422 with ``fieldValidation=Strict``), ``default``s, and
  openAPIV3Schema validation → 422 Invalid naming each field; a CRD itself is served (or
  created) only if it passes kube-apiserver's CRD checks (``crd_admission``), else 422;
- ``allowWatchBookmarks=true``: a BOOKMARK with the current resourceVersion after every
  ``bookmark_interval`` seconds without an event (kube-apiserver's watch cache sends them
  about once a minute; clients may not rely on any interval — KEP-956, api-concepts
  "Watch bookmarks");
- ``request_latency=(min, max)``: every request waits a uniformly drawn time first (a
  loaded or remote API server; requests still overlap, as on a real one);
- pods/log from ``set_pod_log`` (``tailLines``); ``dryRun=All``;
- fault injection: ``inject_failure(method, path_regex, status, times)`` (or kmock's DSL);
- opt-in (``access=tests.support.access.AccessControl()``): bearer-token authentication, RBAC
  from the stored Roles/Bindings and ValidatingAdmissionPolicies; without it every request is
  allowed (an admin's).

Not emulated (only a real API server or controllers do these; the kind e2e suite covers
them): CEL ``x-kubernetes-validations`` (immutability rules), ``format``, list-type
uniqueness, keyed strategic-merge of lists, server-side apply, managedFields, mutating
admission and webhooks, controllers (nothing runs Jobs or Pods unless a test starts
tests/support/job_controller.py; otherwise tests set their status), graceful pod termination (pods go at once), foreground
deletion ordering (treated as background), consistent snapshots for ``continue`` (pages
read live data), ``resourceVersionMatch``, protobuf/CBOR.

Pinned to kmock==0.8: it relies on kmock's ``Request._parse``, ``Root._requests``/``_payloads``,
``ObjectsArray``/``Object.history`` and the bundled discovery data (``resources.load_bundled``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import aiohttp.web
import attrs
import kmock
from kmock._internal import rendering

from tests.support import discovery
from tests.support.api_errors import REASONS, ApiError, bad_request, not_found
from tests.support.kinds import Kind
from tests.support.object_store import ObjectStore, int_param, selectors_from_params
from tests.support.watching import Watcher, bookmark, initial_events

_PATCH_TYPES = {
    "application/json-patch+json": "json",
    "application/merge-patch+json": "merge",
    "application/strategic-merge-patch+json": "strategic",
}


@dataclass(frozen=True)
class ResourcePath:
    """A parsed resource URL: /api/v1/..., /apis/<group>/<version>/..."""

    group: str
    version: str | None
    namespace: str | None = None
    plural: str | None = None
    name: str | None = None
    subresource: str | None = None


def parse_resource_path(path: str) -> ResourcePath | None:
    parts = [p for p in path.split("/") if p]
    if len(parts) >= 2 and parts[0] == "api":
        group, version, rest = "", parts[1], parts[2:]
    elif len(parts) == 2 and parts[0] == "apis":
        return ResourcePath(parts[1], None)
    elif len(parts) >= 3 and parts[0] == "apis":
        group, version, rest = parts[1], parts[2], parts[3:]
    else:
        return None
    namespace = None
    # /namespaces/{ns}/{plural}/... vs. the namespaces resource itself (/namespaces/{name}[/status]).
    if len(rest) >= 3 and rest[0] == "namespaces" and rest[2] not in ("status", "finalize"):
        namespace, rest = rest[1], rest[2:]
    if len(rest) > 3:
        return ResourcePath(group, version, namespace, rest[0], rest[1], "/".join(rest[2:]))
    padded = rest + [None] * (3 - len(rest))
    return ResourcePath(group, version, namespace, padded[0], padded[1], padded[2])


@dataclass(eq=False)
class InjectedFailure:
    """Requests matching ``method`` and the ``path`` regex (searched in path?query) fail with ``status``.

    ``times`` failures, then it is spent (None: forever); ``hits`` counts the failed requests.
    """

    method: str | None
    path: re.Pattern[str]
    status: int = 500
    times: int | None = 1
    message: str = "injected failure"
    hits: int = 0

    def matches(self, method: str, target: str) -> bool:
        return (self.method is None or self.method.upper() == method) and bool(self.path.search(target))


@attrs.define(kw_only=True)
class KubeEmulator(kmock.KubernetesEmulator):
    """kmock's KubernetesEmulator serving the API server semantics of ``ObjectStore`` over HTTP.

    Run it with ``tests.support.threaded.ThreadedKubeEmulator`` (own thread and loop) or as
    ``async with KubeEmulator() as emu, kmock.Server(emu)``. ``store`` holds the state
    (``store.objects`` is kmock's ``emulator.objects``); reach it only from the server's loop.
    """

    crds: list[dict[str, Any]] = attrs.field(factory=list)
    request_log_limit: int = 2000  # kmock's request log is kept bounded: the last N requests
    event_history_limit: int = 20000  # changes kept for watch resourceVersion replays
    default_namespaces: tuple[str, ...] = ("default", "kube-system", "kube-public")
    #: ``tests.support.access.AccessControl``: authentication, RBAC and admission; None allows everything.
    access: Any = None
    request_latency: tuple[float, float] | None = None  # seconds (min, max) added to every request
    bookmark_interval: float = 60.0  # idle seconds before a BOOKMARK on watches that allow them

    store: ObjectStore = attrs.field(init=False)
    internal_errors: list[BaseException] = attrs.field(factory=list, init=False)
    failures: list[InjectedFailure] = attrs.field(factory=list, init=False)
    _closing: bool = attrs.field(default=False, init=False)

    def __attrs_post_init__(self) -> None:
        # kmock's own fallback reactions are replaced by _dispatch(); user reactions stay possible.
        self.store = ObjectStore(self.objects, crds=self.crds, event_history_limit=self.event_history_limit,
                                 default_namespaces=self.default_namespaces)
        for kind in self.store.kinds.values():
            self._describe(kind)

    def _describe(self, kind: Kind) -> None:
        """Mirror a served kind into kmock's ``resources`` (kmock's own view of discovery)."""
        self.resources[kind.resource] = kmock.ResourceInfo(
            namespaced=kind.namespaced, kind=kind.kind, singular=kind.singular, verbs=set(kind.verbs),
            shortnames=set(kind.short_names), categories=set(kind.categories), subresources=set(kind.subresources))

    def add_crd(self, crd: dict[str, Any]) -> list[Kind]:
        """Serve another CustomResourceDefinition (and store the CRD object, as kopf expects)."""
        kinds = self.store.add_crd(crd)
        for kind in kinds:
            self._describe(kind)
        return kinds

    # ---------------------------------------------------------------- HTTP

    async def __call__(self, raw_request: aiohttp.web.BaseRequest) -> aiohttp.web.StreamResponse:
        await raw_request.read()
        try:
            request = await rendering.Request._parse(raw_request, id=len(self._requests))
        except ValueError:  # kmock's path parser fails on some valid URLs, e.g. /api/v1/namespaces
            request = await _bare_request(raw_request, len(self._requests))
        self._requests.append(request)
        if len(self._requests) > 2 * self.request_log_limit:
            del self._requests[: len(self._requests) - self.request_log_limit]
        try:
            return await self._handle(request)
        except ApiError as e:
            return _json_response(e.status(), e.code)
        except Exception as e:  # an emulator bug: answer 500 and keep it for the fixture to report
            self.internal_errors.append(e)
            return _json_response(ApiError(500, "InternalError", f"emulator error: {e!r}").status(), 500)

    def inject_failure(self, method: str | None, path: str, status: int = 500, times: int | None = 1,
                       message: str = "injected failure") -> InjectedFailure:
        """Make matching requests fail with a ``Status`` body (see ``InjectedFailure``)."""
        failure = InjectedFailure(method, re.compile(path), status, times, message)
        self.failures.append(failure)
        return failure

    def _injected(self, request: rendering.Request) -> None:
        raw = request._raw_request
        assert raw is not None
        target = raw.path_qs
        for failure in list(self.failures):
            if failure.matches(raw.method.upper(), target):
                failure.hits += 1
                if failure.times is not None and failure.hits >= failure.times:
                    self.failures.remove(failure)
                raise ApiError(failure.status, REASONS.get(failure.status, "InternalError"), failure.message)

    async def _handle(self, request: rendering.Request) -> aiohttp.web.StreamResponse:
        if self.request_latency:
            await asyncio.sleep(random.uniform(*self.request_latency))
        if self.failures:
            self._injected(request)
        if self._payloads:  # reactions added through kmock's DSL (e.g. fault injection) go first
            response = await self._react(request)
            if response is not None:
                return response
        return await self._dispatch(request)

    async def _react(self, request: rendering.Request) -> aiohttp.web.StreamResponse | None:
        # Highest priority first, as kmock orders them: priorities padded with zeros to one length.
        width = max(len(p.priorities) for p in self._payloads)
        ordered = sorted(self._payloads, key=lambda p: tuple(-x for x in p.priorities) + (0,) * (
            width - len(p.priorities)))
        for payload in ordered:
            if request in payload._source and not payload._disabled.is_set():
                try:
                    return await payload(request)
                except rendering.ReactionMismatchError:
                    payload._disabled.set()
                except NotImplementedError:
                    pass
        return None

    async def _dispatch(self, request: rendering.Request) -> aiohttp.web.StreamResponse:
        raw = request._raw_request
        assert raw is not None
        path, method, params = raw.path.rstrip("/") or "/", raw.method.upper(), dict(raw.query)
        user = self.access.authenticate(raw.headers.get("Authorization")) if self.access is not None else None
        parsed = parse_resource_path(path)
        if user is not None:
            self.access.authorize(self.store, user, method, path, params, *(
                (parsed.group, parsed.plural, parsed.namespace, parsed.name, parsed.subresource)
                if parsed is not None and parsed.plural is not None else (None,) * 5))
        if method == "GET" and path in ("/", "/version", "/api", "/apis"):
            return _json_response(discovery.root_document(path, self.store.kinds.values()))
        if parsed is None:
            raise ApiError(404, "NotFound", f"the server could not find the requested resource ({path})")
        if parsed.plural is None:
            if method != "GET":
                raise ApiError(405, "MethodNotAllowed", f"{method} is not allowed on {path}")
            return _json_response(discovery.group_document(parsed.group, parsed.version, self.store.kinds.values()))
        kind = self.store.kinds.get((parsed.group, parsed.version, parsed.plural))
        if kind is None:
            raise ApiError(404, "NotFound", "the server could not find the requested resource "
                                            f"({parsed.group}/{parsed.version}/{parsed.plural})")
        namespace = parsed.namespace if kind.namespaced else None
        name, sub = parsed.name, parsed.subresource
        if sub is not None and sub not in kind.subresources:
            raise ApiError(404, "NotFound", f"the server could not find the requested resource "
                                            f"({kind.qualified}/{sub})")
        warnings: list[str] = []
        common = {"warnings": warnings, "dry_run": params.get("dryRun") == "All"}
        strict = params.get("fieldValidation") == "Strict"
        await asyncio.sleep(0)  # let watch streams flush between writes, as a real server interleaves
        if user is not None and method in ("POST", "PUT", "PATCH", "DELETE"):
            self._admit(user, method, kind, namespace, name, sub, request.data, params, strict, common)

        if method == "GET" and params.get("watch") in ("true", "1"):
            if name is not None:
                params["fieldSelector"] = ",".join(filter(None, [params.get("fieldSelector"),
                                                                 f"metadata.name={name}"]))
            return await self._watch(request, kind, namespace, params)
        if name is None:
            if method == "GET":
                return _json_response(self.store.list_objects(kind, namespace, params))
            if method == "POST":
                obj = self.store.create_object(kind, namespace, request.data, strict=strict, **common)
                return _json_response(obj, 201, warnings)
            if method == "DELETE":
                return self._delete_collection(kind, namespace, params, request.data, warnings)
            raise ApiError(405, "MethodNotAllowed", f"{method} is not allowed on a collection")
        if sub == "log":
            return self._pod_log(kind, namespace, name, params)
        status_sub = sub if sub == "status" else None
        if method == "GET":
            obj = self.store.current(kind, namespace, name)
            if obj is None:
                raise not_found(kind, name)
            return _json_response(obj)
        if method == "PUT":
            obj = self.store.update_object(kind, namespace, name, request.data, subresource=status_sub,
                                     strict=strict, **common)
            return _json_response(obj, 200, warnings)
        if method == "PATCH":
            content_type = (raw.headers.get("Content-Type") or "").split(";")[0].strip().lower()
            patch_type = _PATCH_TYPES.get(content_type)
            if patch_type is None:
                raise ApiError(415, "UnsupportedMediaType", f"the patch content type {content_type!r} is not "
                               f"supported by the emulator (supported: {', '.join(_PATCH_TYPES)})")
            if patch_type == "strategic" and _directives(request.data):
                raise bad_request(f"strategic merge patch directives {sorted(_directives(request.data))} are not "
                                  "supported by the emulator (it applies strategic merge patches as merge patches)")
            if patch_type == "strategic" and kind.custom:
                raise ApiError(415, "UnsupportedMediaType", "the body of the request was in an unknown format - "
                               "accepted media types include: application/json-patch+json, "
                               "application/merge-patch+json, application/apply-patch+yaml (strategic merge "
                               "patch is not supported for custom resources)")
            obj = self.store.patch_object(kind, namespace, name, patch_type, request.data, subresource=status_sub,
                                    strict=strict, **common)
            return _json_response(obj, 200, warnings)
        if method == "DELETE":
            options = request.data if isinstance(request.data, dict) else {}
            obj = self.store.delete_object(kind, namespace, name, propagation=_propagation(params, options),
                                     preconditions=options.get("preconditions"), **common)
            return _json_response(obj, 200, warnings)
        raise ApiError(405, "MethodNotAllowed", f"{method} is not allowed on {path}")

    def _admit(self, user: Any, method: str, kind: Kind, namespace: str | None, name: str | None,
               sub: str | None, data: Any, params: dict[str, str], strict: bool, common: dict[str, Any]) -> None:
        """Validating admission, on the object the write would store (a dry run of it) and the stored one."""
        dry = {"warnings": [], "dry_run": True, "strict": strict}
        status_sub = sub if sub == "status" else None
        if method == "POST" and name is None:
            old, new = None, self.store.create_object(kind, namespace, data, **dry)
            operation, name = "CREATE", new["metadata"]["name"]
        elif method == "DELETE":
            names = [name] if name is not None else [o["metadata"]["name"] for o in self.store.list_objects(
                kind, namespace, {k: v for k, v in params.items() if k != "limit"})["items"]]
            for each in names:
                self.access.admit(self.store, user, "DELETE", kind, namespace, each, sub,
                                  self.store.current(kind, namespace, each), None,
                                  dry_run=common["dry_run"], warnings=common["warnings"])
            return
        elif method == "PUT" and name is not None:
            old = self.store.current(kind, namespace, name)
            new = self.store.update_object(kind, namespace, name, data, subresource=status_sub, **dry)
            operation = "UPDATE"
        elif method == "PATCH" and name is not None:
            old = self.store.current(kind, namespace, name)
            patch_type = "json" if isinstance(data, list) else "merge"  # strategic is served as merge
            new = self.store.patch_object(kind, namespace, name, patch_type, data, subresource=status_sub, **dry)
            operation = "UPDATE"  # admission sees a PATCH as an UPDATE of the patched object
        else:
            return  # the request is refused below (405, 415, ...)
        self.access.admit(self.store, user, operation, kind, namespace, name, sub, old, new,
                          dry_run=common["dry_run"], warnings=common["warnings"])

    def _delete_collection(self, kind: Kind, namespace: str | None, params: dict[str, str], data: Any,
                           warnings: list[str]) -> aiohttp.web.StreamResponse:
        options = data if isinstance(data, dict) else {}
        listed = self.store.list_objects(kind, namespace, {k: v for k, v in params.items() if k != "limit"})
        deleted = []
        for obj in listed["items"]:
            meta = obj["metadata"]
            if self.store.current(kind, meta.get("namespace"), meta["name"]) is not None:
                deleted.append(self.store.delete_object(kind, meta.get("namespace"), meta["name"],
                                                  propagation=_propagation(params, options), warnings=warnings))
        listed["items"], listed["metadata"] = deleted, {"resourceVersion": self.store.resource_version}
        return _json_response(listed, 200, sorted(set(warnings)))

    def _pod_log(self, kind: Kind, namespace: str | None, name: str, params: dict[str, str]
                 ) -> aiohttp.web.StreamResponse:
        if self.store.current(kind, namespace, name) is None:
            raise not_found(kind, name)
        text = self.store.pod_logs.get((namespace or "", name), "")
        tail = int_param(params, "tailLines")
        if tail is not None:
            lines = text.splitlines(keepends=True)
            text = "".join(lines[-tail:]) if tail > 0 else ""
        return aiohttp.web.Response(text=text, content_type="text/plain")

    async def _watch(self, request: rendering.Request, kind: Kind, namespace: str | None,
                     params: dict[str, str]) -> aiohttp.web.StreamResponse:
        labels, fields = selectors_from_params(kind, params)
        watcher = Watcher(kind, namespace, labels, fields)
        store = self.store
        initial = initial_events(watcher, params, store.live(kind, namespace), store.events, int(store.resource_version))
        timeout = int_param(params, "timeoutSeconds")
        bookmarks = params.get("allowWatchBookmarks") in ("true", "1")
        response = aiohttp.web.StreamResponse(status=200, headers={"Content-Type": "application/json"})
        raw = request._raw_request
        assert raw is not None
        await response.prepare(raw)
        if not (initial and initial[-1]["type"] == "ERROR"):
            self.store.watchers.add(watcher)
        try:
            for event in initial:
                await response.write(json.dumps(event).encode() + b"\n")
            if watcher in self.store.watchers:
                async with asyncio.timeout(timeout if timeout and timeout > 0 else None):
                    while not self._closing:
                        event = await self._next_event(watcher, bookmarks)
                        if event is None:
                            break
                        await response.write(json.dumps(event).encode() + b"\n")
            await response.write_eof()
        except TimeoutError:  # timeoutSeconds: the server ends the stream, as Kubernetes does
            with contextlib.suppress(ConnectionResetError):
                await response.write_eof()
        except ConnectionResetError:  # the client went away
            pass
        finally:
            self.store.watchers.discard(watcher)
        return response

    async def _next_event(self, watcher: Watcher, bookmarks: bool) -> dict[str, Any] | None:
        if not bookmarks:
            return await watcher.queue.get()
        try:
            return await asyncio.wait_for(watcher.queue.get(), self.bookmark_interval)
        except TimeoutError:
            return bookmark(watcher.kind, self.store.resource_version)

    def close_watches(self) -> None:
        """End every open watch stream (clients see the server close it and may reconnect)."""
        self._closing = True
        for watcher in list(self.store.watchers):
            watcher.queue.put_nowait(None)


def _directives(patch: Any) -> set[str]:
    """Strategic-merge-patch directives ($patch, $retainKeys, $setElementOrder/…) anywhere in a patch."""
    found: set[str] = set()
    if isinstance(patch, dict):
        for key, value in patch.items():
            if isinstance(key, str) and key.startswith("$"):
                found.add(key.split("/")[0])
            found |= _directives(value)
    elif isinstance(patch, list):
        for item in patch:
            found |= _directives(item)
    return found


def _propagation(params: dict[str, str], options: dict[str, Any]) -> str | None:
    policy = params.get("propagationPolicy") or options.get("propagationPolicy")
    orphan = params.get("orphanDependents", options.get("orphanDependents"))
    if policy is None and orphan is not None:
        policy = "Orphan" if str(orphan).lower() == "true" else "Background"
    return policy


def _json_response(body: Any, status: int = 200, warnings: Iterable[str] = ()) -> aiohttp.web.Response:
    headers = {"Content-Type": "application/json"}
    response = aiohttp.web.Response(body=json.dumps(body).encode(), status=status, headers=headers)
    for warning in warnings:
        response.headers.add("Warning", f'299 - "{warning}"')
    return response


async def _bare_request(raw: aiohttp.web.BaseRequest, request_id: int) -> rendering.Request:
    body = await raw.read()
    try:
        data = json.loads(body) if body else None
    except ValueError:
        data = None
    return rendering.Request(id=request_id, raw_request=raw, url=raw.url, method=raw.method,
                             params=dict(raw.query), headers=dict(raw.headers), body=body,
                             text=body.decode(errors="replace"), data=data)
