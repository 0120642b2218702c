"""Kubernetes Events on a TrainingJob, one per status transition (``kubectl describe tj``)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import kopf


def post(body: dict[str, Any], events: Iterable[tuple[str, str, str]]) -> None:
    """Queue (type, reason, message) events; kopf posts them in the background, with backoff."""
    ref = {
        "apiVersion": body.get("apiVersion"),
        "kind": body.get("kind"),
        "metadata": {k: body["metadata"][k] for k in ("name", "namespace", "uid") if k in body["metadata"]},
    }
    for kind, reason, message in events:
        kopf.event(ref, type=kind, reason=reason, message=message)
