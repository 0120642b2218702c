"""The emulator's opt-in options: per-request latency and watch bookmarks."""

from __future__ import annotations

import json
import time
import urllib.request

from tests.support.threaded import ThreadedKubeEmulator

TJS = "/apis/training.laxai.io/v1alpha1/namespaces/default/trainingjobs"


def test_request_latency_delays_every_request():
    with ThreadedKubeEmulator(request_latency=(0.2, 0.25)) as emu:
        started = time.monotonic()
        with urllib.request.urlopen(emu.url + TJS, timeout=5) as response:
            assert response.status == 200
        assert time.monotonic() - started >= 0.2


def watch_events(emu, query: str) -> list[dict]:
    with urllib.request.urlopen(f"{emu.url}{TJS}?watch=true&resourceVersion=1&timeoutSeconds=1{query}",
                                timeout=5) as response:
        return [json.loads(line) for line in response.read().splitlines() if line]


def test_bookmarks_only_when_allowed():
    with ThreadedKubeEmulator(bookmark_interval=0.1) as emu:
        rv = emu.call(lambda: emu.store.resource_version)
        bookmarks = [e for e in watch_events(emu, "&allowWatchBookmarks=true") if e["type"] == "BOOKMARK"]
        assert bookmarks and bookmarks[0]["object"]["metadata"] == {"resourceVersion": rv}
        assert bookmarks[0]["object"]["kind"] == "TrainingJob"
        assert watch_events(emu, "") == []
