"""laxai_operator.metrics: the phase gauge is computed from the current resources at scrape time."""

from prometheus_client import CollectorRegistry, generate_latest

from laxai_operator.metrics import PhaseCollector


def scrape(collector):
    registry = CollectorRegistry()
    registry.register(collector)
    return generate_latest(registry).decode()


def test_counts_by_phase_with_zeros():
    c = PhaseCollector()
    phases = ["pending", "running", "running", "failed"]
    c.source = lambda: phases
    text = scrape(c)
    for phase, n in {"pending": 1, "running": 2, "completed": 0, "failed": 1, "cancelled": 0}.items():
        assert f'laxai_trainingjobs{{phase="{phase}"}} {float(n)}' in text
    phases.append("completed")  # computed at each scrape, never cached
    assert 'laxai_trainingjobs{phase="completed"} 1.0' in scrape(c)


def test_no_source_yet_is_all_zero():
    assert 'laxai_trainingjobs{phase="pending"} 0.0' in scrape(PhaseCollector())


def test_concurrent_change_during_scrape_is_retried():
    c = PhaseCollector()
    calls = []

    def flaky():
        calls.append(1)
        if len(calls) < 3:
            raise RuntimeError("dictionary changed size during iteration")
        return ["running"]

    c.source = flaky
    assert c.phases() == ["running"] and len(calls) == 3
