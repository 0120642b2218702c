"""laxai_operator.leader: the optional Lease-based leader gate, against the API emulator."""

from __future__ import annotations

import os
import threading
import time
import urllib.request
from datetime import UTC, datetime, timedelta

import pytest

from laxai_operator.leader import LeaderGate, StandbyHealth
from tests.operator.conftest import JOBS, NS, make_tj

LEASES = "coordination.k8s.io/v1/leases"


@pytest.fixture()
def coordination(kube_emulator):
    import kubernetes

    client = kube_emulator.api_client()
    yield kubernetes.client.CoordinationV1Api(client)
    client.close()


class Clock:
    def __init__(self):
        self.now = datetime(2026, 1, 1, tzinfo=UTC)

    def __call__(self):
        return self.now


def gate(api, identity, clock=None, **kw):
    kw.setdefault("lease_seconds", 15)
    kw.setdefault("renew_every", 5)
    return LeaderGate(api, NS, identity=identity, clock=clock or Clock(), **kw)


def test_one_holder_at_a_time_and_release_hands_over(kube_emulator, coordination):
    clock = Clock()
    a, b = gate(coordination, "a", clock), gate(coordination, "b", clock)
    assert a.try_acquire() and not b.try_acquire()
    lease = kube_emulator.get(LEASES, NS, "laxai-operator")["spec"]
    assert lease["holderIdentity"] == "a" and lease["leaseDurationSeconds"] == 15
    clock.now += timedelta(seconds=10)
    assert a.renew() and not b.try_acquire()
    a.release()
    assert b.try_acquire() and not a.renew()
    spec = kube_emulator.get(LEASES, NS, "laxai-operator")["spec"]
    assert spec["holderIdentity"] == "b" and spec["leaseTransitions"] == 1


def test_an_expired_lease_can_be_taken_over(kube_emulator, coordination):
    clock = Clock()
    a, b = gate(coordination, "a", clock), gate(coordination, "b", clock)
    assert a.try_acquire()
    clock.now += timedelta(seconds=14)
    assert not b.try_acquire()  # still current
    clock.now += timedelta(seconds=2)
    assert b.try_acquire()  # a stopped renewing 16 s ago
    assert not a.renew()  # and a learns it lost


def test_a_stale_write_loses(kube_emulator, coordination):
    """Two candidates read the same expired Lease; only the first conditional write wins."""
    clock = Clock()
    assert gate(coordination, "old", clock).try_acquire()
    clock.now += timedelta(minutes=1)
    a, b = gate(coordination, "a", clock), gate(coordination, "b", clock)
    stale = a._read()
    assert b.try_acquire()
    stale["spec"] = a._spec(stale["spec"], clock.now)
    with pytest.raises(Exception) as err:
        coordination.replace_namespaced_lease("laxai-operator", NS, stale, _preload_content=False)
    assert getattr(err.value, "status", None) == 409


def test_keep_calls_on_lost_when_the_lease_is_taken(kube_emulator, coordination):
    a = gate(coordination, "a", lease_seconds=2, renew_every=0.2, clock=lambda: datetime.now(UTC))
    assert a.try_acquire()
    lost = threading.Event()
    a.keep(on_lost=lost.set)
    time.sleep(0.5)
    assert not lost.is_set()  # renewing fine
    kube_emulator.patch(LEASES, NS, "laxai-operator", {"spec": {"holderIdentity": "intruder"}})
    assert lost.wait(3)
    a.release()


def test_renew_every_must_leave_a_margin(coordination):
    with pytest.raises(ValueError, match="half"):
        LeaderGate(coordination, NS, lease_seconds=10, renew_every=6)


def test_standby_answers_liveness():
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with StandbyHealth(port, addr="127.0.0.1"):
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as resp:
            assert resp.status == 200 and b"standby" in resp.read()


@pytest.mark.slow
def test_two_replicas_only_the_leader_reconciles_then_the_standby_takes_over(kube_emulator):
    from tests.operator.test_cli import _get, _start, _stop, free_port

    emu = kube_emulator
    ports = [free_port(), free_port()]
    envs = [{**os.environ, "KUBECONFIG": str(emu.kubeconfig_path), "LAXAI_WATCH_NAMESPACES": NS,
             "LAXAI_LEADER_ELECTION": "true", "LAXAI_LEADER_ELECTION_NAMESPACE": NS,
             "LAXAI_METRICS_PORT": "0", "LAXAI_HEALTH_PORT": str(p)} for p in ports]
    first = _start(envs[0])
    second = None
    try:
        emu.wait_for(lambda: emu.get(LEASES, NS, "laxai-operator"), timeout=30, message="Lease taken")
        second = _start(envs[1])
        emu.wait_for(lambda: _get(f"http://127.0.0.1:{ports[1]}/healthz")[0] == 200, timeout=30,
                     message="standby liveness")
        assert "standby" in _get(f"http://127.0.0.1:{ports[1]}/healthz")[1]
        make_tj(emu, "run-1")
        emu.wait_for_object(JOBS, NS, "tj-run-1", timeout=30)
        _stop(first)  # graceful: releases the Lease
        make_tj(emu, "run-2")
        emu.wait_for_object(JOBS, NS, "tj-run-2", timeout=30)  # only the former standby can have made it

        def kopf_liveness():  # the standby's endpoint gave way to kopf's on the same port
            code, body = _get(f"http://127.0.0.1:{ports[1]}/healthz")
            return code == 200 and "standby" not in body

        emu.wait_for(kopf_liveness, timeout=20, message="kopf liveness after takeover")
        assert second.poll() is None
    finally:
        if first.poll() is None:
            _stop(first)
        if second is not None:
            _stop(second)
