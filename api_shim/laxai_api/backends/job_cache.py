"""A watch-backed cache of one namespace's TrainingJobs, for the kubernetes backend's reads.

Informer pattern (what client-go's reflector does): list every TrainingJob once (pages of
500), then watch from the list's resourceVersion with ``allowWatchBookmarks`` (bookmarks
only move the resume point forward); a watch that ends (server timeout, dropped
connection) resumes from the last resourceVersion seen; ``410 Gone`` (the resume point has
left the server's history, as an HTTP status or an ERROR event) means list again.

- :class:`JobIndex` is the state, pure and single-threaded: it runs on the API's event loop
  only (the watch thread hands every change over with ``call_soon_threadsafe``), so reads
  take no lock. Each job is a :class:`CachedJob`: the fields lists filter and sort on, plus
  the object trimmed to what responses show (spec, the status fields a response reads, the
  creation time) as compact JSON — no managedFields, kopf annotations, labels or Job
  names; about 1 KB a job — and the job's list item, rendered once per version (about
  0.5 KB), so a list page joins ready-made JSON. A status or detail parses a record from
  the trimmed object (an LRU keeps the recently served ones).
- Objects are made ready (trimmed, validated, rendered: :meth:`JobIndex.prepare`) in the
  watch thread, not on the event loop; the loop only files the result, so a relist of
  5,000 jobs never blocks requests for the half second that parsing them takes. When the
  cache reports synced every held job is ready: the first list is as fast as the next.
- Versions compare as integers (KEP-5504, "comparable resource versions", GA in v1.35;
  etcd revisions before that): an event or write response older than what the index holds
  is ignored, and a deleted name keeps a tombstone so a late write response cannot
  resurrect it. Callers apply their own write responses (:meth:`JobIndex.upsert`), which
  gives read-your-writes; another replica sees the write when its watch delivers it
  (milliseconds), each replica with its own cache and no shared state.
- The index holds every tenant's jobs (one watch per namespace, not one per tenant); tenant
  filtering is done here, by ``spec.tenant_id`` (what authorisation checks), before anything
  reaches a response.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import gc
import json
import logging
import threading
from collections import Counter, OrderedDict
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from kubernetes.client.exceptions import ApiException
from kubernetes.watch.watch import iter_resp_lines

from laxai_api.backends.base import JobRecord
from laxai_api.job_views import summary_json
from laxai_operator.resource import GROUP, PLURAL, VERSION
from laxai_trainer.status import Phase

log = logging.getLogger(__name__)

Obj = dict[str, Any]
Key = tuple[str, str]  # (sortable creation time, name): lists are newest first by this key
#: Status fields a response reads (record_from_object); the rest (jobName, observedGeneration) is dropped.
STATUS_FIELDS = ("phase", "reason", "message", "progress", "metrics", "conditions", "history",
                 "startTime", "completionTime", "attempts")
LIST_CHUNK = 500
TOMBSTONES = 4096
PARSED = 2048


def resource_version(obj: Obj) -> int:
    """An object's resourceVersion as an integer (0 when absent or not a number)."""
    value = (obj.get("metadata") or {}).get("resourceVersion")
    try:
        return int(value)
    except (TypeError, ValueError):
        return 0


@dataclass(slots=True)
class CachedJob:
    name: str
    tenant: str
    phase: Phase
    key: Key
    run_name: str
    rv: int
    doc: bytes  # the trimmed object, compact JSON: parse with the index's ``parse``
    item: bytes  # the job's list item, JSON (the index's ``render``)

    def object(self) -> Obj:
        return json.loads(self.doc)


def trim(obj: Obj, annotations: tuple[str, ...] = ()) -> Obj:
    """The object reduced to what a response shows (of the annotations, only ``annotations``)."""
    meta = obj.get("metadata") or {}
    kept: Obj = {"name": meta.get("name"), "creationTimestamp": meta.get("creationTimestamp")}
    held = {k: v for k, v in (meta.get("annotations") or {}).items() if k in annotations}
    if held:
        kept["annotations"] = held
    status = obj.get("status")
    trimmed: Obj = {"metadata": kept, "spec": obj.get("spec")}
    if isinstance(status, dict):
        trimmed["status"] = {k: status[k] for k in STATUS_FIELDS if k in status}
    return trimmed


Parse = Callable[[Obj], JobRecord | None]


@dataclass(slots=True, frozen=True)
class Change:
    """An object made ready for the index (:meth:`JobIndex.prepare`); ``entry`` None: not servable."""

    name: str | None
    rv: int
    entry: CachedJob | None
    record: JobRecord | None = None  # the parsed record, kept for the LRU when the change is applied


class JobIndex:
    """The cached TrainingJobs, indexed for lists: newest first, by tenant, counted by phase.

    ``parse`` turns a (trimmed) object into a record, None when it is not servable (no
    usable tenant); ``key`` is a record's list order; ``render`` its list item (JSON);
    ``annotations`` are kept by ``trim``. :meth:`prepare` is pure (any thread); every
    other method runs on the event loop.
    """

    def __init__(self, parse: Parse, key: Callable[[JobRecord], Key], annotations: tuple[str, ...] = (),
                 tombstones: int = TOMBSTONES, parsed: int = PARSED,
                 render: Callable[[JobRecord], bytes] = summary_json) -> None:
        self.parse, self.key, self.annotations, self.render = parse, key, annotations, render
        # The most recently served records, parsed (validating 1,000 specs costs ~50 ms; a list
        # page is mostly the same jobs each time): at most ``parsed`` of them, ~6 KB each.
        self._parsed: OrderedDict[str, tuple[int, JobRecord]] = OrderedDict()
        self._parsed_limit = parsed
        self.jobs: dict[str, CachedJob] = {}
        self.resource_version = 0  # the newest version seen: list, event, bookmark or write
        self._order: dict[str | None, list[Key]] = {None: []}  # None: all tenants
        self._counts: Counter[tuple[str | None, Phase]] = Counter()
        self._active: dict[tuple[str, str], set[Key]] = {}  # (tenant, run name) -> its pending/running jobs
        self._gone: OrderedDict[str, int] = OrderedDict()  # deleted name -> its deletion's version
        self._tombstones = tombstones

    # ---- changes

    def upsert(self, obj: Obj) -> bool:
        """Apply an ADDED/MODIFIED event or a write response; False when it is older than what is held."""
        return self.apply(self.prepare(obj))

    def apply(self, change: Change) -> bool:
        """File a prepared object; False when it is older than what is held (or was deleted after it)."""
        name, rv = change.name, change.rv
        held = self.jobs.get(name) if name else None
        if not name or (held is not None and held.rv >= rv) or self._gone.get(name, -1) >= rv:
            return False
        self._seen(rv)
        if held is not None:
            self._remove(held)
        if change.entry is not None:
            self._add(change.entry)
            if change.record is not None:
                self._remember(change.entry, change.record)
        return True

    def delete(self, obj: Obj) -> bool:
        name = (obj.get("metadata") or {}).get("name")
        rv = resource_version(obj)
        held = self.jobs.get(name)
        if not name or (held is not None and held.rv > rv):
            return False
        self._seen(rv)
        if held is not None:
            self._remove(held)
        self._gone[name] = max(rv, self._gone.get(name, 0))
        self._gone.move_to_end(name)
        while len(self._gone) > self._tombstones:
            self._gone.popitem(last=False)
        return True

    def prepare(self, obj: Obj, keep_record: bool = True) -> Change:
        """Trim, validate and render an object (pure: the watch thread runs it off the loop)."""
        name, rv = (obj.get("metadata") or {}).get("name"), resource_version(obj)
        trimmed = trim(obj, self.annotations)
        record = self.parse(trimmed) if name else None
        if record is None:
            return Change(name, rv, None)
        entry = CachedJob(name=record.task_id, tenant=record.tenant_id, phase=record.phase, key=self.key(record),
                          run_name=record.run_name, rv=rv, doc=json.dumps(trimmed, separators=(",", ":")).encode(),
                          item=self.render(record))
        return Change(name, rv, entry, record if keep_record else None)

    def holds(self, obj: Obj) -> bool:
        """Whether this version (or a newer one) of the object is filed already.

        Safe from the watch thread (one dict read): a job's filed version only grows until it
        is deleted or relisted, and either drops older events anyway, so a True is never stale.
        """
        held = self.jobs.get((obj.get("metadata") or {}).get("name"))
        return held is not None and held.rv >= resource_version(obj)

    def record(self, entry: CachedJob) -> JobRecord:
        held = self._parsed.get(entry.name)
        if held is not None and held[0] == entry.rv:
            self._parsed.move_to_end(entry.name)
            return held[1]
        record = self.parse(entry.object())
        assert record is not None  # entries are only made from objects that parse
        self._remember(entry, record)
        return record

    def _remember(self, entry: CachedJob, record: JobRecord) -> None:
        self._parsed[entry.name] = (entry.rv, record)
        self._parsed.move_to_end(entry.name)
        while len(self._parsed) > self._parsed_limit:
            self._parsed.popitem(last=False)

    def bookmark(self, rv: int) -> None:
        self._seen(rv)

    def replace(self, changes: list[Change], rv: int) -> None:
        """A fresh list (at version ``rv``, prepared) replaces the index; newer entries (own writes) stay."""
        listed = {change.name for change in changes}
        for held in list(self.jobs.values()):
            if held.name not in listed and held.rv <= rv:
                self._remove(held)
        for change in changes:
            self.apply(change)
        self._seen(rv)

    def _seen(self, rv: int) -> None:
        self.resource_version = max(self.resource_version, rv)

    def _add(self, entry: CachedJob) -> None:
        self.jobs[entry.name] = entry
        for tenant in (None, entry.tenant):
            bisect.insort(self._order.setdefault(tenant, []), entry.key)
            self._counts[(tenant, entry.phase)] += 1
        if not entry.phase.terminal:
            self._active.setdefault((entry.tenant, entry.run_name), set()).add(entry.key)

    def _remove(self, entry: CachedJob) -> None:
        del self.jobs[entry.name]
        self._parsed.pop(entry.name, None)
        for tenant in (None, entry.tenant):
            order = self._order[tenant]
            del order[bisect.bisect_left(order, entry.key)]
            self._counts[(tenant, entry.phase)] -= 1
            if tenant is not None and not order:
                del self._order[tenant]
        active = self._active.get((entry.tenant, entry.run_name))
        if active is not None:
            active.discard(entry.key)
            if not active:
                del self._active[(entry.tenant, entry.run_name)]

    # ---- reads

    def get(self, name: str) -> CachedJob | None:
        return self.jobs.get(name)

    def active_run(self, tenant: str, run_name: str) -> str | None:
        """The newest pending/running job of ``tenant`` writing to ``run_name``, if any."""
        active = self._active.get((tenant, run_name))
        return max(active)[1] if active else None

    def total(self, tenant: str | None, phase: Phase | None) -> int:
        if phase is not None:
            return self._counts[(tenant, phase)]
        return len(self._order.get(tenant, ()))

    def newest_first(self, tenant: str | None, before: Key | None = None) -> Iterator[CachedJob]:
        """Jobs of a tenant (None: all), newest first, starting after the cursor ``before``."""
        order = self._order.get(tenant, [])
        start = bisect.bisect_left(order, before) if before is not None else len(order)
        for i in range(start - 1, -1, -1):
            yield self.jobs[order[i][1]]

    def page(self, tenant: str | None, phase: Phase | None, limit: int,
             before: Key | None = None) -> tuple[int, list[CachedJob], Key | None]:
        """(total matching, one page newest first, the cursor of the next page or None)."""
        shown: list[CachedJob] = []
        more = False
        for job in self.newest_first(tenant, before):
            if phase is not None and job.phase != phase:
                continue
            if len(shown) == limit:
                more = True
                break
            shown.append(job)
        return self.total(tenant, phase), shown, shown[-1].key if more else None


class JobCache:
    """Keeps a :class:`JobIndex` in sync with the API server from a background thread.

    ``custom`` is a ``kubernetes.client.CustomObjectsApi``; ``start`` must run on the event
    loop that reads the index. ``watch_timeout`` is the server-side watch timeout (the watch
    is then resumed), ``backoff`` the pause after a failed list or watch.
    """

    def __init__(self, custom: Any, namespace: str, index: JobIndex, *, watch_timeout: int = 300,
                 backoff: float = 1.0, max_backoff: float = 30.0) -> None:
        self.custom = custom
        self.namespace = namespace
        self.watch_timeout = watch_timeout
        self.backoff = backoff
        self.max_backoff = max_backoff
        self.index = index
        self.lists = 0  # full lists done (1 + relists after 410 Gone or errors)
        self.last_error: str | None = None
        self._synced = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._response: Any = None

    @property
    def synced(self) -> bool:
        return self._synced.is_set()

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._thread = threading.Thread(target=self._run, name=f"trainingjob-cache-{self.namespace}", daemon=True)
        self._thread.start()

    async def wait_synced(self, timeout: float) -> bool:
        if self._synced.is_set():  # the usual case: no timer task per request
            return True
        try:
            await asyncio.wait_for(self._synced.wait(), timeout)
        except TimeoutError:
            return False
        return True

    async def close(self) -> None:
        self._stop.set()
        response = self._response
        if response is not None:
            with contextlib.suppress(OSError, ValueError, RuntimeError):  # already ended or released
                response.shutdown()  # urllib3 >= 2.3: ends the watch thread's blocking read
        if self._thread is not None:
            await asyncio.to_thread(self._thread.join, 5)

    # ---- the sync loop (background thread)

    def _post(self, fn: Callable[..., Any], *args: Any) -> None:
        assert self._loop is not None
        try:
            self._loop.call_soon_threadsafe(fn, *args)
        except RuntimeError:  # the loop is closed: the API is shutting down
            self._stop.set()

    def _run(self) -> None:
        rv: int | None = None  # None: list first
        delay = self.backoff
        while not self._stop.is_set():
            try:
                if rv is None:
                    rv = self._list()
                rv = self._watch(rv)
                delay = self.backoff
            except ApiException as exc:
                if exc.status == 410:  # the resume point left the server's history: relist
                    log.info("TrainingJob watch expired (410 Gone): listing again")
                    rv = None
                    continue
                self._failed(f"Kubernetes API error {exc.status} {exc.reason}", delay)
                delay = min(self.max_backoff, delay * 2)
            except Exception as exc:  # noqa: BLE001 - connection trouble: retry with backoff
                if self._stop.is_set():
                    break
                self._failed(f"{type(exc).__name__}: {exc}", delay)
                delay = min(self.max_backoff, delay * 2)

    def _failed(self, message: str, delay: float) -> None:
        self.last_error = message
        log.warning("TrainingJob cache: %s (retrying in %.1f s)", message, delay)
        self._stop.wait(delay)

    def _list(self) -> int:
        items: list[Obj] = []
        token = None
        while True:
            kwargs: dict[str, Any] = {"limit": LIST_CHUNK, "_preload_content": False}
            if token:
                kwargs["_continue"] = token
            answer = _json(self.custom.list_namespaced_custom_object(
                GROUP, VERSION, self.namespace, PLURAL, **kwargs))
            items += answer.get("items") or []
            meta = answer.get("metadata") or {}
            token = meta.get("continue")
            if not token:
                break
        rv = resource_version(answer)
        changes = [self.index.prepare(obj, keep_record=False) for obj in items]  # off the loop
        del items
        self.lists += 1
        self._post(self._replaced, changes, rv)
        return rv

    def _replaced(self, changes: list[Change], rv: int) -> None:
        self.index.replace(changes, rv)
        self.last_error = None
        # The cache of thousands of jobs is long-lived: collect once, then leave it out of the
        # collector's scans (gc.freeze), or every full collection that a burst of POSTs
        # triggers scans all of it (~0.2 s pauses at 5,000 jobs: bench.api_latency's POST p99).
        gc.collect()
        gc.freeze()
        self._synced.set()

    def _watch(self, rv: int) -> int:
        """Follow the watch from ``rv`` until the server ends it; the last version seen."""
        response = self.custom.list_namespaced_custom_object(
            GROUP, VERSION, self.namespace, PLURAL, watch=True, resource_version=str(rv),
            allow_watch_bookmarks=True, timeout_seconds=self.watch_timeout, _preload_content=False,
            _request_timeout=(10, self.watch_timeout + 30))
        self._response = response
        try:
            if self._stop.is_set():  # close() ran before the response was published: it could not end it
                return rv
            _check(response)
            for line in iter_resp_lines(response):
                if self._stop.is_set():
                    break
                if not line:
                    continue
                event = json.loads(line)
                kind, obj = event.get("type"), event.get("object") or {}
                if kind == "ERROR":
                    raise ApiException(status=obj.get("code") or 500, reason=obj.get("message") or "watch error")
                rv = max(rv, resource_version(obj))
                if kind in ("ADDED", "MODIFIED"):
                    if not self.index.holds(obj):  # e.g. the echo of our own write: nothing to prepare
                        self._post(self.index.apply, self.index.prepare(obj))
                elif kind == "DELETED":
                    self._post(self.index.delete, obj)
                elif kind == "BOOKMARK":
                    self._post(self.index.bookmark, resource_version(obj))
        finally:
            self._response = None
            if self._stop.is_set():  # a cut or unread stream: never hand its connection to the next request
                response.close()
            response.release_conn()
        return rv


def _check(response: Any) -> None:
    status = getattr(response, "status", 200)
    if not 200 <= status <= 299:
        body = response.data
        exc = ApiException(status=status, reason=getattr(response, "reason", ""))
        exc.body = body.decode(errors="replace") if isinstance(body, bytes) else body
        raise exc


def _json(response: Any) -> Obj:
    _check(response)
    return json.loads(response.data)
