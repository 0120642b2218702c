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
  openAPIV3Schema validation → 422 Invalid naming each field;
- pods/log from ``set_pod_log`` (``tailLines``); ``dryRun=All``;
- fault injection: ``inject_failure(method, path_regex, status, times)`` (or kmock's DSL).

Not emulated (only a real API server or controllers do these; the kind e2e suite covers
them): CEL ``x-kubernetes-validations`` (immutability rules), ``format``, list-type
uniqueness, keyed strategic-merge of lists, server-side apply, managedFields, RBAC and
authentication (any request is allowed), admission, controllers (nothing runs Jobs or
Pods: tests set their status), graceful pod termination (pods go at once), foreground
deletion ordering (treated as background), consistent snapshots for ``continue`` (pages
read live data), ``resourceVersionMatch``, protobuf/CBOR.

Pinned to kmock==0.8: it relies on kmock's ``Request._parse``, ``Root._requests``/``_payloads``,
``ObjectsArray``/``Object.history`` and the bundled discovery data (``resources.load_bundled``).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import copy
import datetime
import json
import re
import secrets
import uuid
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import aiohttp.web
import attrs
import kmock
from kmock._internal import rendering

from tests.support import patching, selectors
from tests.support.crd_schema import Cause
from tests.support.kinds import Kind, builtin_kinds, kinds_from_crd

Obj = dict[str, Any]
ObjKey = tuple[kmock.resource, str | None, str]

_NAME_RE = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_LABEL_NAME_RE = re.compile(r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$")
_LABEL_VALUE_RE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
_GENERATE_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"  # as the API server's generateName suffix
_PATCH_TYPES = {
    "application/json-patch+json": "json",
    "application/merge-patch+json": "merge",
    "application/strategic-merge-patch+json": "strategic",
}
# kinds whose DELETE orphans dependents unless told otherwise (legacy API defaults)
_ORPHAN_BY_DEFAULT = {("batch", "v1", "jobs"), ("apps", "v1", "replicasets"), ("", "v1", "replicationcontrollers")}
_JOB_ORPHAN_WARNING = (
    'child pods are preserved by default when jobs are deleted; set propagationPolicy=Background '
    'to remove them or set propagationPolicy=Orphan to suppress this warning'
)


def now_rfc3339() -> str:
    return datetime.datetime.now(tz=datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class ApiError(Exception):
    """An API error, rendered as a Kubernetes ``Status`` body with its HTTP code."""

    def __init__(self, code: int, reason: str, message: str, details: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.code, self.reason, self.message, self.details = code, reason, message, details

    def status(self) -> Obj:
        body: Obj = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                     "message": self.message, "reason": self.reason, "code": self.code}
        if self.details is not None:
            body["details"] = self.details
        return body


def _details(kind: Kind | None, name: str | None) -> dict[str, Any]:
    details: dict[str, Any] = {}
    if name:
        details["name"] = name
    if kind is not None:
        details["group"] = kind.group
        details["kind"] = kind.plural
    return details


def not_found(kind: Kind, name: str) -> ApiError:
    return ApiError(404, "NotFound", f'{kind.qualified} "{name}" not found', _details(kind, name))


def conflict(kind: Kind, name: str, why: str) -> ApiError:
    return ApiError(409, "Conflict", f'Operation cannot be fulfilled on {kind.qualified} "{name}": {why}',
                    _details(kind, name))


def bad_request(message: str) -> ApiError:
    return ApiError(400, "BadRequest", message)


def invalid(kind: Kind, name: str, causes: list[Cause]) -> ApiError:
    texts = [f"{c.field}: {c.message}" if c.field else c.message for c in causes]
    summary = texts[0] if len(texts) == 1 else "[" + ", ".join(texts) + "]"
    group = f"{kind.kind}.{kind.group}" if kind.group else kind.kind
    details = _details(kind, name) | {"kind": kind.kind, "causes": [
        {"reason": c.reason, "message": c.message, "field": c.field} for c in causes]}
    return ApiError(422, "Invalid", f'{group} "{name}" is invalid: {summary}', details)


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
class _Watcher:
    kind: Kind
    namespace: str | None
    labels: tuple[selectors.Requirement, ...]
    fields: tuple[selectors.Requirement, ...]
    queue: asyncio.Queue[Obj | None] = field(default_factory=asyncio.Queue)

    def sees(self, obj: Obj | None) -> bool:
        if obj is None:
            return False
        if self.namespace is not None and obj["metadata"].get("namespace") != self.namespace:
            return False
        return selectors.matches(obj, self.labels, self.fields)

    def offer(self, kind: Kind, event_type: str, old: Obj | None, new: Obj) -> Obj | None:
        """The event this watcher gets for a change (old → new), if any."""
        if kind is not self.kind:
            return None
        was, now = self.sees(old), self.sees(new)
        if event_type == "DELETED":
            return {"type": "DELETED", "object": new} if now or was else None
        if was and now:
            return {"type": "MODIFIED", "object": new}
        if now:
            return {"type": "ADDED", "object": new}
        if was:  # stopped matching the selectors
            return {"type": "DELETED", "object": new}
        return None


_REASONS = {400: "BadRequest", 401: "Unauthorized", 403: "Forbidden", 404: "NotFound", 409: "Conflict",
            410: "Gone", 422: "Invalid", 429: "TooManyRequests", 500: "InternalError",
            503: "ServiceUnavailable", 504: "Timeout"}


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
    """kmock's KubernetesEmulator with the API server semantics listed in the module docstring.

    All state changes run synchronously on the server's event loop, so each request is
    atomic without locks. Use it through ``tests.support.threaded.ThreadedKubeEmulator``
    (own thread and loop) or ``async with KubeEmulator() as emu, kmock.Server(emu)``.
    """

    crds: list[dict[str, Any]] = attrs.field(factory=list)
    request_log_limit: int = 2000  # kmock's request log is kept bounded: the last N requests
    event_history_limit: int = 20000  # watch events kept for resourceVersion replays
    default_namespaces: tuple[str, ...] = ("default", "kube-system", "kube-public")

    kinds: dict[tuple[str, str, str], Kind] = attrs.field(factory=dict, init=False)
    pod_logs: dict[tuple[str, str], str] = attrs.field(factory=dict, init=False)
    internal_errors: list[BaseException] = attrs.field(factory=list, init=False)
    _rv: int = attrs.field(default=0, init=False)
    _uids: dict[str, ObjKey] = attrs.field(factory=dict, init=False)
    _watchers: set[_Watcher] = attrs.field(factory=set, init=False)
    _events: deque[tuple[int, Kind, str, Obj | None, Obj]] = attrs.field(factory=deque, init=False)
    _closing: bool = attrs.field(default=False, init=False)
    failures: list[InjectedFailure] = attrs.field(factory=list, init=False)

    def __attrs_post_init__(self) -> None:
        # kmock's own fallback reactions are replaced by _dispatch(); user reactions stay possible.
        for kind in builtin_kinds():
            self.register(kind)
        for crd in self.crds:
            self.add_crd(crd)
        for name in self.default_namespaces:
            self.create_object(self.kind("v1/namespaces"), None, {"metadata": {"name": name}})

    # ---------------------------------------------------------------- registry

    def register(self, kind: Kind) -> None:
        self.kinds[kind.key] = kind
        self.resources[kind.resource] = kmock.ResourceInfo(
            namespaced=kind.namespaced, kind=kind.kind, singular=kind.singular, verbs=set(kind.verbs),
            shortnames=set(kind.short_names), categories=set(kind.categories),
            subresources=set(kind.subresources))

    def add_crd(self, crd: dict[str, Any]) -> list[Kind]:
        """Serve a CRD's kinds and store the CRD object itself (kopf's scanning sees it)."""
        kinds = kinds_from_crd(crd)
        for kind in kinds:
            self.register(kind)
        crd_kind = self.kind("apiextensions.k8s.io/v1/customresourcedefinitions")
        body = copy.deepcopy(crd)
        body["status"] = {"conditions": [{"type": "Established", "status": "True"}],
                          "acceptedNames": crd["spec"]["names"], "storedVersions":
                          [v["name"] for v in crd["spec"]["versions"] if v.get("storage")]}
        self.create_object(crd_kind, None, body, privileged=True)
        return kinds

    def kind(self, ref: str) -> Kind:
        """A served kind by 'group/version/plural', 'v1/pods', plural, Kind or short name."""
        parts = ref.split("/")
        if len(parts) == 3 and (parts[0], parts[1], parts[2]) in self.kinds:
            return self.kinds[(parts[0], parts[1], parts[2])]
        if len(parts) == 2 and ("", parts[0], parts[1]) in self.kinds:
            return self.kinds[("", parts[0], parts[1])]
        lowered = ref.lower()
        candidates = [k for k in self.kinds.values()
                      if lowered in (k.plural, k.kind.lower(), k.singular, *k.short_names)]
        if not candidates:
            raise KeyError(f"no served resource matches {ref!r}")
        # Prefer the core group, then the CRDs and well-known groups, as kubectl does.
        candidates.sort(key=lambda k: (k.group != "", "metrics" in k.group, k.group))
        return candidates[0]

    # ---------------------------------------------------------------- storage primitives

    def next_rv(self) -> str:
        self._rv += 1
        return str(self._rv)

    @property
    def resource_version(self) -> str:
        return str(self._rv)

    def _key(self, kind: Kind, namespace: str | None, name: str) -> ObjKey:
        return (kind.resource, namespace if kind.namespaced else None, name)

    def current(self, kind: Kind, namespace: str | None, name: str) -> Obj | None:
        """The live object (the stored dict itself: do not mutate) or None."""
        key = self._key(kind, namespace, name)
        if key not in self.objects:
            return None
        obj = self.objects[key]
        return None if obj.deleted else obj.raw

    def live(self, kind: Kind, namespace: str | None = None) -> list[Obj]:
        """Live objects of a kind, in (namespace, name) order, as stored (do not mutate)."""
        found = []
        wanted = kind.key
        for (resource, ns, _), obj in self.objects.items():
            # plain attribute comparison: kmock.resource.__eq__ is slow (runtime protocol checks)
            if ((resource.group, resource.version, resource.plural) == wanted
                    and (namespace is None or ns == namespace) and not obj.deleted):
                found.append(obj.raw)
        found.sort(key=lambda o: (o["metadata"].get("namespace") or "", o["metadata"]["name"]))
        return found

    def _store(self, kind: Kind, event_type: str, old: Obj | None, new: Obj) -> None:
        key = self._key(kind, new["metadata"].get("namespace"), new["metadata"]["name"])
        if event_type == "DELETED":  # the final state (with its resourceVersion), then kmock's marker
            self.objects[key].history.append(new)
            self.objects[key].delete()
            self._uids.pop(new["metadata"]["uid"], None)
        elif key in self.objects:
            self.objects[key].history.append(new)
        else:
            self.objects[key] = new
        if event_type == "ADDED":
            self._uids[new["metadata"]["uid"]] = key
        self._emit(kind, event_type, old, new)

    def _emit(self, kind: Kind, event_type: str, old: Obj | None, new: Obj) -> None:
        self._events.append((int(new["metadata"]["resourceVersion"]), kind, event_type, old, new))
        while len(self._events) > self.event_history_limit:
            self._events.popleft()
        for watcher in list(self._watchers):
            event = watcher.offer(kind, event_type, old, new)
            if event is not None:
                watcher.queue.put_nowait(event)

    # ---------------------------------------------------------------- validation helpers

    def _validate_metadata(self, kind: Kind, obj: Obj) -> None:
        meta = obj["metadata"]
        name = meta["name"]
        causes: list[Cause] = []
        max_len = 63 if kind.key == ("batch", "v1", "jobs") or kind.plural == "namespaces" else 253
        if kind.group == "rbac.authorization.k8s.io":  # RBAC names are path segments (e.g. system:x)
            name_ok = isinstance(name, str) and name not in (".", "..") and not re.search(r"[/%]", name)
        else:
            name_ok = isinstance(name, str) and bool(_NAME_RE.match(name)) and len(name) <= max_len
        if not name_ok:
            causes.append(Cause("metadata.name", f"Invalid value: {json.dumps(name)}: a lowercase RFC 1123 "
                                f"subdomain of at most {max_len} characters must consist of lower case "
                                "alphanumeric characters, '-' or '.', and must start and end with an "
                                "alphanumeric character"))
        for what in ("labels", "annotations"):
            mapping = meta.get(what) or {}
            if not isinstance(mapping, dict):
                causes.append(Cause(f"metadata.{what}", "Invalid value: must be a map of strings"))
                continue
            for key, value in mapping.items():
                prefix, _, short = key.rpartition("/")
                if not _LABEL_NAME_RE.match(short) or len(short) > 63 or (
                        prefix and (not _NAME_RE.match(prefix) or len(prefix) > 253)):
                    causes.append(Cause(f"metadata.{what}", f"Invalid value: {json.dumps(key)}: "
                                        "name part must be 63 characters or less, alphanumeric, '-', '_' "
                                        "or '.', with an optional DNS subdomain prefix and '/'"))
                if not isinstance(value, str):
                    causes.append(Cause(f"metadata.{what}", f"Invalid value: {json.dumps(value)}: "
                                        f"the value of {key!r} must be a string"))
                elif what == "labels" and (len(value) > 63 or not _LABEL_VALUE_RE.match(value)):
                    causes.append(Cause("metadata.labels", f"Invalid value: {json.dumps(value)}: a valid "
                                        "label must be an empty string or consist of at most 63 "
                                        "alphanumeric characters, '-', '_' or '.', starting and ending "
                                        "with an alphanumeric character"))
        for i, ref in enumerate(meta.get("ownerReferences") or []):
            for required in ("apiVersion", "kind", "name", "uid"):
                if not isinstance(ref, dict) or not ref.get(required):
                    causes.append(Cause(f"metadata.ownerReferences[{i}].{required}", "Required value",
                                        "FieldValueRequired"))
        finalizers = meta.get("finalizers") or []
        if not isinstance(finalizers, list) or not all(isinstance(f, str) for f in finalizers):
            causes.append(Cause("metadata.finalizers", "Invalid value: must be a list of strings"))
        if causes:
            raise invalid(kind, str(name), causes)

    def _apply_schema(self, kind: Kind, obj: Obj, *, strict: bool, warnings: list[str]) -> Obj:
        if kind.schema is None:
            return obj
        obj, removed = kind.schema.prune(obj)
        if removed and strict:
            raise invalid(kind, obj["metadata"]["name"], [
                Cause(path, f'unknown field "{path}"', "FieldValueInvalid") for path in removed])
        warnings.extend(f'unknown field "{path}"' for path in removed)
        obj = kind.schema.default(obj)
        causes = kind.schema.validate(obj)
        if causes:
            raise invalid(kind, obj["metadata"]["name"], causes)
        return obj

    # ---------------------------------------------------------------- operations (sync, on the loop)

    def create_object(self, kind: Kind, namespace: str | None, body: Any, *, privileged: bool = False,
                      strict: bool = False, dry_run: bool = False, warnings: list[str] | None = None) -> Obj:
        """Create as the API server does; ``privileged`` keeps ``status`` (for test setup)."""
        warnings = [] if warnings is None else warnings
        if not isinstance(body, dict):
            raise bad_request(f"the body of a create must be a JSON object, got {type(body).__name__}")
        obj = copy.deepcopy(body)
        meta = obj.setdefault("metadata", {})
        if not isinstance(meta, dict):
            raise bad_request("metadata must be an object")
        for field_name, expected in (("apiVersion", kind.api_version), ("kind", kind.kind)):
            if obj.get(field_name) not in (None, expected):
                raise bad_request(f"the {field_name} of the object ({obj[field_name]!r}) does not match the "
                                  f"endpoint's ({expected!r})")
        obj["apiVersion"], obj["kind"] = kind.api_version, kind.kind
        if kind.namespaced:
            body_ns = meta.get("namespace")
            if namespace is None and body_ns is None:
                raise bad_request(f"{kind.qualified} is namespaced: create it under /namespaces/<ns>/")
            if namespace is not None and body_ns not in (None, namespace):
                raise bad_request("the namespace of the provided object does not match the namespace sent "
                                  f"on the request ({body_ns!r} != {namespace!r})")
            meta["namespace"] = namespace = namespace or body_ns
        else:
            meta.pop("namespace", None)
        if not meta.get("name"):
            prefix = meta.get("generateName")
            if not prefix:
                raise invalid(kind, "", [Cause("metadata.name", "Required value: name or generateName is "
                                               "required", "FieldValueRequired")])
            for _ in range(100):
                suffix = "".join(secrets.choice(_GENERATE_ALPHABET) for _ in range(5))
                if self.current(kind, namespace, prefix + suffix) is None:
                    break
            meta["name"] = prefix + suffix
        name = meta["name"]
        self._validate_metadata(kind, obj)
        if self.current(kind, namespace, name) is not None:
            raise ApiError(409, "AlreadyExists", f'{kind.qualified} "{name}" already exists',
                           _details(kind, name))
        if kind.has_status and not privileged:
            obj.pop("status", None)
            if kind.key == ("", "v1", "pods"):
                obj["status"] = {"phase": "Pending"}
        for dropped in ("deletionTimestamp", "deletionGracePeriodSeconds", "managedFields"):
            meta.pop(dropped, None)
        meta["uid"] = str(uuid.uuid4())
        meta["creationTimestamp"] = now_rfc3339()
        meta["generation"] = 1
        meta.pop("resourceVersion", None)
        obj = self._apply_schema(kind, obj, strict=strict, warnings=warnings)
        if kind.key == ("", "v1", "namespaces"):
            obj.setdefault("status", {"phase": "Active"})
        if dry_run:
            return obj
        if kind.namespaced and self.current(self.kind("v1/namespaces"), None, namespace) is None:
            self.create_object(self.kind("v1/namespaces"), None, {"metadata": {"name": namespace}})
        obj["metadata"]["resourceVersion"] = self.next_rv()
        self._store(kind, "ADDED", None, obj)
        return obj

    def update_object(self, kind: Kind, namespace: str | None, name: str, new: Obj, *,
                      subresource: str | None = None, strict: bool = False, dry_run: bool = False,
                      privileged: bool = False, warnings: list[str] | None = None) -> Obj:
        """Commit a full new version (from PUT or a patch) with the API server's rules."""
        warnings = [] if warnings is None else warnings
        old = self.current(kind, namespace, name)
        if old is None:
            raise not_found(kind, name)
        if not isinstance(new, dict):
            raise bad_request("the object must be a JSON object")
        new = copy.deepcopy(new)
        if not isinstance(new.get("metadata"), dict):
            new["metadata"] = {}
        meta = new["metadata"]
        if meta.get("name") not in (None, name):
            raise bad_request(f"the name of the object ({meta.get('name')!r}) does not match the name on "
                              f"the URL ({name!r})")
        sent_rv = meta.get("resourceVersion")
        if sent_rv not in (None, "") and str(sent_rv) != old["metadata"]["resourceVersion"]:
            raise conflict(kind, name, "the object has been modified; please apply your changes to the latest "
                                       "version and try again")
        if subresource == "status":
            merged = copy.deepcopy(old)
            if "status" in new:
                merged["status"] = new["status"]
            else:
                merged.pop("status", None)
            new = merged
        else:
            if kind.has_status and not privileged:
                if "status" in old:
                    new["status"] = copy.deepcopy(old["status"])
                else:
                    new.pop("status", None)
            for immutable in ("name", "namespace", "uid", "creationTimestamp", "generation",
                              "deletionTimestamp", "deletionGracePeriodSeconds", "resourceVersion"):
                if immutable in old["metadata"]:
                    meta[immutable] = old["metadata"][immutable]
                else:
                    meta.pop(immutable, None)
        new["apiVersion"], new["kind"] = kind.api_version, kind.kind
        self._validate_metadata(kind, new)
        new = self._apply_schema(kind, new, strict=strict, warnings=warnings)
        old_meta = old["metadata"]
        if old_meta.get("deletionTimestamp"):
            added = set(new["metadata"].get("finalizers") or []) - set(old_meta.get("finalizers") or [])
            if added:
                raise invalid(kind, name, [Cause("metadata.finalizers", "Forbidden: no new finalizers can be "
                                                 "added if the object is being deleted", "FieldValueForbidden")])
        if new == old:
            return old  # a no-op write: no new resourceVersion, no event, as in Kubernetes
        if _spec_part(new) != _spec_part(old):
            new["metadata"]["generation"] = int(old_meta.get("generation") or 1) + 1
        if dry_run:
            return new
        new["metadata"]["resourceVersion"] = self.next_rv()
        self._store(kind, "MODIFIED", old, new)
        if new["metadata"].get("deletionTimestamp") and not new["metadata"].get("finalizers"):
            self._remove(kind, new)
            return self._last(kind, new)
        return new

    def patch_object(self, kind: Kind, namespace: str | None, name: str, patch_type: str, patch: Any,
                     **kwargs: Any) -> Obj:
        old = self.current(kind, namespace, name)
        if old is None:
            raise not_found(kind, name)
        try:
            if patch_type == "json":
                new = patching.json_patch(old, patch)
            else:
                if not isinstance(patch, dict):
                    raise patching.MalformedPatch(f"a {patch_type} merge patch must be a JSON object")
                new = patching.merge_patch(old, patch)
        except patching.MalformedPatch as e:
            raise bad_request(str(e)) from e
        except patching.PatchError as e:
            raise ApiError(422, "Invalid", f"the server rejected our request due to an error in our request: "
                                           f"{e}", _details(kind, name)) from e
        if isinstance(new, dict) and isinstance(new.get("metadata"), dict):
            # A patch names its own resourceVersion only to ask for an optimistic-concurrency check.
            sent = new["metadata"].get("resourceVersion")
            patched_rv = patch.get("metadata", {}).get("resourceVersion") if isinstance(patch, dict) else sent
            if patched_rv is None or str(patched_rv) == old["metadata"]["resourceVersion"]:
                new["metadata"].pop("resourceVersion", None)
        return self.update_object(kind, namespace, name, new, **kwargs)

    def delete_object(self, kind: Kind, namespace: str | None, name: str, *, propagation: str | None = None,
                      preconditions: dict[str, Any] | None = None, dry_run: bool = False,
                      warnings: list[str] | None = None) -> Obj:
        warnings = [] if warnings is None else warnings
        obj = self.current(kind, namespace, name)
        if obj is None:
            raise not_found(kind, name)
        meta = obj["metadata"]
        for field_name in ("uid", "resourceVersion"):
            expected = (preconditions or {}).get(field_name)
            if expected is not None and str(expected) != meta.get(field_name):
                raise conflict(kind, name, f"Precondition failed: {field_name} in precondition: {expected}, "
                                           f"{field_name} in object meta: {meta.get(field_name)}")
        if propagation is None:
            propagation = "Orphan" if kind.key in _ORPHAN_BY_DEFAULT else "Background"
            if kind.key == ("batch", "v1", "jobs"):
                warnings.append(_JOB_ORPHAN_WARNING)
        if propagation not in ("Orphan", "Background", "Foreground"):
            raise bad_request(f"propagationPolicy must be Orphan, Background or Foreground, not {propagation!r}")
        if dry_run:
            return obj
        if propagation == "Orphan":
            self._orphan_dependents(meta["uid"])
        if kind.key == ("", "v1", "namespaces"):
            for other in list(self.kinds.values()):
                if other.namespaced:
                    for child in self.live(other, name):
                        self._delete_now(other, child)
        if meta.get("deletionTimestamp"):
            return obj  # already being deleted: waits for its finalizers
        if meta.get("finalizers"):
            new = copy.deepcopy(obj)
            new["metadata"]["deletionTimestamp"] = now_rfc3339()
            new["metadata"]["deletionGracePeriodSeconds"] = 0
            new["metadata"]["resourceVersion"] = self.next_rv()
            self._store(kind, "MODIFIED", obj, new)
            return new
        self._remove(kind, obj)
        return self._last(kind, obj)

    def _delete_now(self, kind: Kind, obj: Obj) -> None:
        """Delete as the garbage collector does (background), ignoring already-gone objects."""
        meta = obj["metadata"]
        if self.current(kind, meta.get("namespace"), meta["name"]) is not None:
            self.delete_object(kind, meta.get("namespace"), meta["name"], propagation="Background")

    def _last(self, kind: Kind, obj: Obj) -> Obj:
        return self.objects[self._key(kind, obj["metadata"].get("namespace"), obj["metadata"]["name"])].last.raw

    def _remove(self, kind: Kind, obj: Obj) -> None:
        gone = copy.deepcopy(obj)
        gone["metadata"]["resourceVersion"] = self.next_rv()
        self._store(kind, "DELETED", obj, gone)
        self._collect_garbage(gone["metadata"]["uid"])

    def _dependents(self, owner_uid: str) -> list[tuple[Kind, Obj]]:
        found = []
        for (resource, _, _), stored in self.objects.items():
            if stored.deleted:
                continue
            obj = stored.raw
            if any(ref.get("uid") == owner_uid for ref in obj["metadata"].get("ownerReferences") or []):
                found.append((self.kinds[(resource.group, resource.version, resource.plural)], obj))
        return found

    def _collect_garbage(self, owner_uid: str) -> None:
        for kind, obj in self._dependents(owner_uid):
            refs = obj["metadata"].get("ownerReferences") or []
            if any(ref.get("uid") in self._uids for ref in refs):
                self._strip_owner(kind, obj, owner_uid)  # other owners remain: drop the dangling ref
            else:
                self._delete_now(kind, obj)

    def _orphan_dependents(self, owner_uid: str) -> None:
        for kind, obj in self._dependents(owner_uid):
            self._strip_owner(kind, obj, owner_uid)

    def _strip_owner(self, kind: Kind, obj: Obj, owner_uid: str) -> None:
        new = copy.deepcopy(obj)
        refs = [ref for ref in new["metadata"]["ownerReferences"] if ref.get("uid") != owner_uid]
        if refs:
            new["metadata"]["ownerReferences"] = refs
        else:
            del new["metadata"]["ownerReferences"]
        new["metadata"]["resourceVersion"] = self.next_rv()
        self._store(kind, "MODIFIED", obj, new)

    def list_objects(self, kind: Kind, namespace: str | None, params: dict[str, str]) -> Obj:
        labels, fields = _selectors(params)
        items = [o for o in self.live(kind, namespace) if selectors.matches(o, labels, fields)]
        meta: Obj = {"resourceVersion": self.resource_version}
        token = params.get("continue")
        if token:
            try:
                start = json.loads(base64.urlsafe_b64decode(token.encode()))["start"]
            except (ValueError, KeyError, TypeError) as e:
                raise bad_request(f"invalid continue token {token!r}") from e
            items = [o for o in items if [o["metadata"].get("namespace") or "", o["metadata"]["name"]] > start]
        limit = _int_param(params, "limit")
        if limit and limit > 0 and len(items) > limit:
            last = items[limit - 1]["metadata"]
            start = [last.get("namespace") or "", last["name"]]
            meta["continue"] = base64.urlsafe_b64encode(json.dumps({"start": start}).encode()).decode()
            meta["remainingItemCount"] = len(items) - limit
            items = items[:limit]
        return {"kind": f"{kind.kind}List", "apiVersion": kind.api_version, "metadata": meta, "items": items}

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
                raise ApiError(failure.status, _REASONS.get(failure.status, "InternalError"), failure.message)

    async def _handle(self, request: rendering.Request) -> aiohttp.web.StreamResponse:
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
        if method == "GET" and path in ("/", "/version", "/api", "/apis"):
            return _json_response(self._discovery(path))
        parsed = parse_resource_path(path)
        if parsed is None:
            raise ApiError(404, "NotFound", f"the server could not find the requested resource ({path})")
        if parsed.plural is None:
            if method != "GET":
                raise ApiError(405, "MethodNotAllowed", f"{method} is not allowed on {path}")
            return _json_response(self._discover_group_version(parsed.group, parsed.version))
        kind = self.kinds.get((parsed.group, parsed.version, parsed.plural))
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

        if method == "GET" and params.get("watch") in ("true", "1"):
            if name is not None:
                params["fieldSelector"] = ",".join(filter(None, [params.get("fieldSelector"),
                                                                 f"metadata.name={name}"]))
            return await self._watch(request, kind, namespace, params)
        if name is None:
            if method == "GET":
                return _json_response(self.list_objects(kind, namespace, params))
            if method == "POST":
                obj = self.create_object(kind, namespace, request.data, strict=strict, **common)
                return _json_response(obj, 201, warnings)
            if method == "DELETE":
                return self._delete_collection(kind, namespace, params, request.data, warnings)
            raise ApiError(405, "MethodNotAllowed", f"{method} is not allowed on a collection")
        if sub == "log":
            return self._pod_log(kind, namespace, name, params)
        status_sub = sub if sub == "status" else None
        if method == "GET":
            obj = self.current(kind, namespace, name)
            if obj is None:
                raise not_found(kind, name)
            return _json_response(obj)
        if method == "PUT":
            obj = self.update_object(kind, namespace, name, request.data, subresource=status_sub,
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
            obj = self.patch_object(kind, namespace, name, patch_type, request.data, subresource=status_sub,
                                    strict=strict, **common)
            return _json_response(obj, 200, warnings)
        if method == "DELETE":
            options = request.data if isinstance(request.data, dict) else {}
            obj = self.delete_object(kind, namespace, name, propagation=_propagation(params, options),
                                     preconditions=options.get("preconditions"), **common)
            return _json_response(obj, 200, warnings)
        raise ApiError(405, "MethodNotAllowed", f"{method} is not allowed on {path}")

    def _delete_collection(self, kind: Kind, namespace: str | None, params: dict[str, str], data: Any,
                           warnings: list[str]) -> aiohttp.web.StreamResponse:
        options = data if isinstance(data, dict) else {}
        listed = self.list_objects(kind, namespace, {k: v for k, v in params.items() if k != "limit"})
        deleted = []
        for obj in listed["items"]:
            meta = obj["metadata"]
            if self.current(kind, meta.get("namespace"), meta["name"]) is not None:
                deleted.append(self.delete_object(kind, meta.get("namespace"), meta["name"],
                                                  propagation=_propagation(params, options), warnings=warnings))
        listed["items"], listed["metadata"] = deleted, {"resourceVersion": self.resource_version}
        return _json_response(listed, 200, sorted(set(warnings)))

    def _pod_log(self, kind: Kind, namespace: str | None, name: str, params: dict[str, str]
                 ) -> aiohttp.web.StreamResponse:
        if self.current(kind, namespace, name) is None:
            raise not_found(kind, name)
        text = self.pod_logs.get((namespace or "", name), "")
        tail = _int_param(params, "tailLines")
        if tail is not None:
            lines = text.splitlines(keepends=True)
            text = "".join(lines[-tail:]) if tail > 0 else ""
        return aiohttp.web.Response(text=text, content_type="text/plain")

    async def _watch(self, request: rendering.Request, kind: Kind, namespace: str | None,
                     params: dict[str, str]) -> aiohttp.web.StreamResponse:
        labels, fields = _selectors(params)
        watcher = _Watcher(kind, namespace, labels, fields)
        since = params.get("resourceVersion") or ""
        initial: list[Obj] = []
        if since in ("", "0") or params.get("sendInitialEvents") == "true":
            initial = [{"type": "ADDED", "object": o} for o in self.live(kind, namespace) if watcher.sees(o)]
            if params.get("sendInitialEvents") == "true":
                initial.append({"type": "BOOKMARK", "object": {
                    "kind": kind.kind, "apiVersion": kind.api_version, "metadata": {
                        "resourceVersion": self.resource_version,
                        "annotations": {"k8s.io/initial-events-end": "true"}}}})
        else:
            if not since.isdigit():
                raise bad_request(f"invalid resourceVersion {since!r}")
            oldest = self._events[0][0] if self._events else self._rv + 1
            if int(since) < oldest - 1 and int(since) < self._rv:
                initial = [{"type": "ERROR", "object": ApiError(
                    410, "Expired", f"too old resource version: {since} ({oldest - 1})").status()}]
            else:
                for rv, event_kind, event_type, old, new in self._events:
                    if rv > int(since):
                        event = watcher.offer(event_kind, event_type, old, new)
                        if event is not None:
                            initial.append(event)
        timeout = _int_param(params, "timeoutSeconds")
        response = aiohttp.web.StreamResponse(status=200, headers={"Content-Type": "application/json"})
        raw = request._raw_request
        assert raw is not None
        await response.prepare(raw)
        if not (initial and initial[-1]["type"] == "ERROR"):
            self._watchers.add(watcher)
        try:
            for event in initial:
                await response.write(json.dumps(event).encode() + b"\n")
            if watcher in self._watchers:
                async with asyncio.timeout(timeout if timeout and timeout > 0 else None):
                    while not self._closing:
                        event = await watcher.queue.get()
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
            self._watchers.discard(watcher)
        return response

    def close_watches(self) -> None:
        """End every open watch stream (clients see the server close it and may reconnect)."""
        self._closing = True
        for watcher in list(self._watchers):
            watcher.queue.put_nowait(None)

    # ---------------------------------------------------------------- discovery

    def _discovery(self, path: str) -> Obj:
        if path == "/version":
            return {"major": "1", "minor": "33", "gitVersion": "v1.33.0-kube-emulator", "platform": "linux/amd64"}
        if path == "/api":
            return {"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": [
                {"clientCIDR": "0.0.0.0/0", "serverAddress": "127.0.0.1"}]}
        groups: dict[str, list[str]] = {}
        for kind in self.kinds.values():
            if kind.group and kind.version not in groups.setdefault(kind.group, []):
                groups[kind.group].append(kind.version)
        if path == "/apis":
            return {"kind": "APIGroupList", "apiVersion": "v1", "groups": [
                _group_doc(group, versions) for group, versions in sorted(groups.items())]}
        paths = {"/api", "/api/v1", "/apis", "/version"}
        for group, versions in groups.items():
            paths.add(f"/apis/{group}")
            paths.update(f"/apis/{group}/{v}" for v in versions)
        return {"paths": sorted(paths)}

    def _discover_group_version(self, group: str, version: str | None) -> Obj:
        if version is None or (group == "" and version != "v1"):
            versions = sorted({k.version for k in self.kinds.values() if k.group == group and group})
            if not versions:
                raise ApiError(404, "NotFound", f"the server could not find the requested resource ({group})")
            return {"kind": "APIGroup", "apiVersion": "v1", **_group_doc(group, versions)}
        kinds = [k for k in self.kinds.values() if k.group == group and k.version == version]
        if not kinds:
            raise ApiError(404, "NotFound", f"the server could not find the requested resource "
                                            f"({group}/{version})")
        resources = []
        for kind in sorted(kinds, key=lambda k: k.plural):
            resources.append({"name": kind.plural, "singularName": kind.singular, "namespaced": kind.namespaced,
                              "kind": kind.kind, "verbs": list(kind.verbs), "shortNames": list(kind.short_names),
                              "categories": list(kind.categories)})
            for sub in sorted(kind.subresources):
                verbs = ["get"] if sub == "log" else ["get", "patch", "update"]
                resources.append({"name": f"{kind.plural}/{sub}", "singularName": "",
                                  "namespaced": kind.namespaced, "kind": kind.kind, "verbs": verbs})
        group_version = f"{group}/{version}" if group else version
        return {"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": group_version,
                "resources": resources}


def _group_doc(group: str, versions: list[str]) -> Obj:
    ordered = sorted(versions, key=_version_priority)
    return {"name": group,
            "versions": [{"groupVersion": f"{group}/{v}", "version": v} for v in ordered],
            "preferredVersion": {"groupVersion": f"{group}/{ordered[0]}", "version": ordered[0]}}


def _version_priority(version: str) -> tuple[int, int, int]:
    m = re.match(r"^v(\d+)(?:(alpha|beta)(\d+))?$", version)
    if not m:
        return (3, 0, 0)
    stability = {"alpha": 2, "beta": 1, None: 0}[m[2]]
    return (stability, -int(m[1]), -int(m[3] or 0))


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


def _spec_part(obj: Obj) -> Obj:
    """What bumps metadata.generation: anything but metadata and status."""
    return {k: v for k, v in obj.items() if k not in ("metadata", "status", "apiVersion", "kind")}


def _int_param(params: dict[str, str], name: str) -> int | None:
    value = params.get(name)
    if value in (None, ""):
        return None
    try:
        return int(value)
    except ValueError as e:
        raise bad_request(f"{name} must be an integer, got {value!r}") from e


def _selectors(params: dict[str, str]) -> tuple[tuple[selectors.Requirement, ...], tuple[selectors.Requirement, ...]]:
    try:
        return (selectors.parse_label_selector(params.get("labelSelector")),
                selectors.parse_field_selector(params.get("fieldSelector")))
    except selectors.SelectorError as e:
        raise bad_request(str(e)) from e


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
