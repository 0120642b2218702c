"""The API server's object semantics over kmock's object store, without HTTP.

``ObjectStore`` owns what an API server keeps: the served kinds, the objects (kmock's
``ObjectsArray``, so every version stays in ``history``), the global resourceVersion
counter, the event history for watch replays and the open watches. Each operation is
synchronous and runs on the emulator's event loop, so it is atomic without locks; see
kube_emulator.py for the list of behaviours and limits.
"""

from __future__ import annotations

import base64
import copy
import datetime
import json
import secrets
import uuid
from collections import deque
from collections.abc import Callable, Iterable
from typing import Any

import kmock

from tests.support import cel_rules, crd_admission, patching, selectors
from tests.support.api_errors import ApiError, bad_request, conflict, details_for, invalid, not_found
from tests.support.crd_schema import Cause
from tests.support.kinds import Kind, builtin_kinds, kinds_from_crd
from tests.support.metadata import validate_metadata
from tests.support.watching import Watcher

Obj = dict[str, Any]
ObjKey = tuple[kmock.resource, str | None, str]

_CRD_KEY = ("apiextensions.k8s.io", "v1", "customresourcedefinitions")
_GENERATE_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"  # as the API server's generateName suffix
# kinds whose DELETE orphans dependents unless told otherwise (legacy API defaults)
_ORPHAN_BY_DEFAULT = {("batch", "v1", "jobs"), ("apps", "v1", "replicasets"), ("", "v1", "replicationcontrollers")}
_JOB_ORPHAN_WARNING = (
    'child pods are preserved by default when jobs are deleted; set propagationPolicy=Background '
    'to remove them or set propagationPolicy=Orphan to suppress this warning'
)


def now_rfc3339() -> str:
    return rfc3339_after(0)


def rfc3339_after(seconds: int) -> str:
    moment = datetime.datetime.now(tz=datetime.UTC) + datetime.timedelta(seconds=seconds)
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


class ObjectStore:
    """Objects of the served kinds with the API server's rules (see the module docstring)."""

    def __init__(self, objects: kmock.ObjectsArray, *, crds: Iterable[dict[str, Any]] = (),
                 event_history_limit: int = 20000,
                 default_namespaces: tuple[str, ...] = ("default", "kube-system", "kube-public")) -> None:
        self.objects = objects
        self.event_history_limit = event_history_limit
        self.kinds: dict[tuple[str, str, str], Kind] = {}
        self.pod_logs: dict[tuple[str, str], str] = {}
        self.watchers: set[Watcher] = set()
        #: Called with (kind, event type, old, new) after every change, on the loop (simulated
        #: controllers, e.g. tests/support/job_controller.py); they must not write synchronously.
        self.listeners: list[Callable[[Kind, str, Obj | None, Obj], None]] = []
        self.events: deque[tuple[int, Kind, str, Obj | None, Obj]] = deque()
        #: Seconds a delete leaves this object in place, with a deletionTimestamp, for a graceful
        #: termination (a running pod: its kubelet stops it, then deletes it with grace 0); None or
        #: 0: at once. Set by a simulated kubelet (tests/support/job_controller.py).
        self.grace_period: Callable[[Kind, Obj], int] | None = None
        self._rv = 0
        self._uids: dict[str, ObjKey] = {}
        for kind in builtin_kinds():
            self.register(kind)
        for crd in crds:
            self.add_crd(crd)
        for name in default_namespaces:
            self.create_object(self.kind("v1/namespaces"), None, {"metadata": {"name": name}})

    # ---------------------------------------------------------------- registry

    def register(self, kind: Kind) -> None:
        self.kinds[kind.key] = kind

    def add_crd(self, crd: dict[str, Any]) -> list[Kind]:
        """Serve a CRD's kinds and store the CRD object itself (kopf's scanning sees it).

        Refused (422, as the API server refuses it) when the CRD breaks the apiextensions
        checks of ``tests.support.crd_admission``: the emulator serves only CRDs a real API
        server would accept.
        """
        crd_kind = self.kind("apiextensions.k8s.io/v1/customresourcedefinitions")
        causes = crd_admission.check(crd)
        if causes:
            raise invalid(crd_kind, crd.get("metadata", {}).get("name", ""), causes)
        kinds = kinds_from_crd(crd)
        for kind in kinds:
            self.register(kind)
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
        self.events.append((int(new["metadata"]["resourceVersion"]), kind, event_type, old, new))
        while len(self.events) > self.event_history_limit:
            self.events.popleft()
        for watcher in list(self.watchers):
            event = watcher.offer(kind, event_type, old, new)
            if event is not None:
                watcher.queue.put_nowait(event)
        for listener in list(self.listeners):
            listener(kind, event_type, old, new)

    # ---------------------------------------------------------------- validation helpers

    def _apply_schema(self, kind: Kind, obj: Obj, *, strict: bool, warnings: list[str],
                      old: Obj | None = None) -> Obj:
        """Prune, default, validate (OpenAPI, then the CEL rules; ``old``: the stored object)."""
        if kind.schema is None:
            return obj
        obj, removed = kind.schema.prune(obj)
        if removed and strict:
            raise invalid(kind, obj["metadata"]["name"], [
                Cause(path, f'unknown field "{path}"', "FieldValueInvalid") for path in removed])
        warnings.extend(f'unknown field "{path}"' for path in removed)
        obj = kind.schema.default(obj)
        causes = kind.schema.validate(obj)
        if not causes:
            prior = {k: v for k, v in old.items() if k != "metadata"} if old is not None else cel_rules.MISSING
            causes = cel_rules.violations(kind.schema.schema, {k: v for k, v in obj.items() if k != "metadata"},
                                          prior)
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
        if kind.key == _CRD_KEY and not privileged:  # a real API server refuses what it cannot serve
            causes = crd_admission.check(obj)
            if causes:
                raise invalid(kind, meta.get("name", ""), causes)
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
            prefix = prefix[:58]  # apiserver names.SimpleNameGenerator: the base is cut to 63 - 5 characters
            for _ in range(100):
                suffix = "".join(secrets.choice(_GENERATE_ALPHABET) for _ in range(5))
                if self.current(kind, namespace, prefix + suffix) is None:
                    break
            meta["name"] = prefix + suffix
        name = meta["name"]
        self._check_metadata(kind, obj)
        if self.current(kind, namespace, name) is not None:
            raise ApiError(409, "AlreadyExists", f'{kind.qualified} "{name}" already exists',
                           details_for(kind, name))
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
        self._check_metadata(kind, new)
        new = self._apply_schema(kind, new, strict=strict, warnings=warnings, old=old)
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
                                           f"{e}", details_for(kind, name)) from e
        if isinstance(new, dict) and isinstance(new.get("metadata"), dict):
            # A patch names its own resourceVersion only to ask for an optimistic-concurrency check.
            sent = new["metadata"].get("resourceVersion")
            patched_rv = patch.get("metadata", {}).get("resourceVersion") if isinstance(patch, dict) else sent
            if patched_rv is None or str(patched_rv) == old["metadata"]["resourceVersion"]:
                new["metadata"].pop("resourceVersion", None)
        return self.update_object(kind, namespace, name, new, **kwargs)

    def delete_object(self, kind: Kind, namespace: str | None, name: str, *, propagation: str | None = None,
                      preconditions: dict[str, Any] | None = None, dry_run: bool = False,
                      warnings: list[str] | None = None, grace_period: int | None = None) -> Obj:
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
            if grace_period == 0 and not meta.get("finalizers"):
                self._remove(kind, obj)  # the kubelet's final delete of a pod it has stopped
                return self._last(kind, obj)
            return obj  # already being deleted: waits for its finalizers (or graceful termination)
        grace = self.grace_period(kind, obj) if self.grace_period is not None and grace_period != 0 else 0
        if meta.get("finalizers") or grace:
            # Graceful deletion: deletionTimestamp is when the grace period ends (metav1.ObjectMeta;
            # pkg/registry/rest/delete.go BeforeDelete).
            new = copy.deepcopy(obj)
            new["metadata"]["deletionTimestamp"] = rfc3339_after(grace)
            new["metadata"]["deletionGracePeriodSeconds"] = grace
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
        labels, fields = selectors_from_params(kind, params)
        items = [o for o in self.live(kind, namespace) if selectors.matches(o, labels, fields)]
        meta: Obj = {"resourceVersion": self.resource_version}
        token = params.get("continue")
        if token:
            try:
                start = json.loads(base64.urlsafe_b64decode(token.encode()))["start"]
            except (ValueError, KeyError, TypeError) as e:
                raise bad_request(f"invalid continue token {token!r}") from e
            items = [o for o in items if [o["metadata"].get("namespace") or "", o["metadata"]["name"]] > start]
        limit = int_param(params, "limit")
        if limit and limit > 0 and len(items) > limit:
            last = items[limit - 1]["metadata"]
            start = [last.get("namespace") or "", last["name"]]
            meta["continue"] = base64.urlsafe_b64encode(json.dumps({"start": start}).encode()).decode()
            meta["remainingItemCount"] = len(items) - limit
            items = items[:limit]
        return {"kind": f"{kind.kind}List", "apiVersion": kind.api_version, "metadata": meta, "items": items}

    def _check_metadata(self, kind: Kind, obj: Obj) -> None:
        causes = validate_metadata(kind, obj)
        if causes:
            raise invalid(kind, str(obj["metadata"].get("name")), causes)


def _spec_part(obj: Obj) -> Obj:
    """What bumps metadata.generation: anything but metadata and status."""
    return {k: v for k, v in obj.items() if k not in ("metadata", "status", "apiVersion", "kind")}


def int_param(params: dict[str, str], name: str) -> int | None:
    value = params.get(name)
    if value in (None, ""):
        return None
    try:
        return int(value)
    except ValueError as e:
        raise bad_request(f"{name} must be an integer, got {value!r}") from e


def selectors_from_params(kind: Kind, params: dict[str, str]
                          ) -> tuple[tuple[selectors.Requirement, ...], tuple[selectors.Requirement, ...]]:
    try:
        fields = selectors.parse_field_selector(params.get("fieldSelector"))
        selectors.check_selectable(kind.group, kind.plural, fields)
        return selectors.parse_label_selector(params.get("labelSelector")), fields
    except selectors.SelectorError as e:
        raise bad_request(str(e)) from e
