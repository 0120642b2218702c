"""Watch streams: which events a watcher sees, and what it is sent when it starts."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from tests.support import selectors
from tests.support.api_errors import ApiError
from tests.support.kinds import Kind

Obj = dict[str, Any]
# (resourceVersion, kind, event type, object before, object after) for every change, in order.
Change = tuple[int, Kind, str, Obj | None, Obj]


@dataclass(eq=False)
class Watcher:
    """One open watch: its kind, namespace and selectors, and the queue its stream drains."""

    kind: Kind
    namespace: str | None
    labels: tuple[selectors.Requirement, ...] = ()
    fields: tuple[selectors.Requirement, ...] = ()
    queue: asyncio.Queue[Obj | None] = field(default_factory=asyncio.Queue)

    def sees(self, obj: Obj | None) -> bool:
        if obj is None:
            return False
        if self.namespace is not None and obj["metadata"].get("namespace") != self.namespace:
            return False
        return selectors.matches(obj, self.labels, self.fields)

    def offer(self, kind: Kind, event_type: str, old: Obj | None, new: Obj) -> Obj | None:
        """The event this watcher gets for a change (old → new), if any.

        As in Kubernetes, an object that starts matching the selectors is ADDED and one that
        stops matching is DELETED for this watcher.
        """
        if kind is not self.kind:
            return None
        was, now = self.sees(old), self.sees(new)
        if event_type == "DELETED":
            return {"type": "DELETED", "object": new} if now or was else None
        if was and now:
            return {"type": "MODIFIED", "object": new}
        if now:
            return {"type": "ADDED", "object": new}
        if was:
            return {"type": "DELETED", "object": new}
        return None


def bookmark(kind: Kind, rv: int | str, initial_events_end: bool = False) -> Obj:
    """A BOOKMARK event: only the kind and a resourceVersion, as the API server sends it."""
    meta: Obj = {"resourceVersion": str(rv)}
    if initial_events_end:
        meta["annotations"] = {"k8s.io/initial-events-end": "true"}
    return {"type": "BOOKMARK", "object": {"kind": kind.kind, "apiVersion": kind.api_version, "metadata": meta}}


def initial_events(watcher: Watcher, params: dict[str, str], live: Iterable[Obj], history: Iterable[Change],
                   current_rv: int) -> list[Obj]:
    """What a new watch is sent before live events, from its ``resourceVersion``/``sendInitialEvents``.

    No resourceVersion (or "0"): an ADDED event per matching object. A resourceVersion: the
    recorded changes after it, or a 410 Expired ERROR when changes after it are no longer kept.
    ``sendInitialEvents=true`` ends the initial ADDED events with a BOOKMARK.
    """
    since = params.get("resourceVersion") or ""
    if since in ("", "0") or params.get("sendInitialEvents") == "true":
        events = [{"type": "ADDED", "object": obj} for obj in live if watcher.sees(obj)]
        if params.get("sendInitialEvents") == "true":
            events.append(bookmark(watcher.kind, current_rv, initial_events_end=True))
        return events
    if not since.isdigit():
        raise ApiError(400, "BadRequest", f"invalid resourceVersion {since!r}")
    changes = list(history)
    oldest = changes[0][0] if changes else current_rv + 1
    if int(since) < oldest - 1:  # some changes after `since` were dropped from the history
        gone = ApiError(410, "Expired", f"too old resource version: {since} ({oldest - 1})")
        return [{"type": "ERROR", "object": gone.status()}]
    events = []
    for rv, kind, event_type, old, new in changes:
        if rv > int(since):
            event = watcher.offer(kind, event_type, old, new)
            if event is not None:
                events.append(event)
    return events
