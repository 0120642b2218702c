"""A throwaway kopf operator run through ``kopf.testing.KopfRunner`` against the emulator.

Proves that kopf 1.45 works against it end to end: discovery, watching, its finalizer
(a JSON patch guarded by a resourceVersion test), status patches, events, deletion.
"""

from __future__ import annotations

import textwrap
import time

import kopf
import kopf.testing
import kubernetes

from tests.support.threaded import ThreadedKubeEmulator

GROUP, VERSION, PLURAL = "training.laxai.io", "v1alpha1", "trainingjobs"
TJ = f"{GROUP}/{VERSION}/{PLURAL}"

# kopf's default progress storage writes status.kopf, which the CRD's structural schema prunes,
# so operators on this CRD keep progress and the diff base in annotations.
OPERATOR = textwrap.dedent('''
    import os

    import kopf

    RESOURCE = ("training.laxai.io", "v1alpha1", "trainingjobs")


    def record(line):
        with open(os.environ["KOPF_PROBE_LOG"], "a") as f:
            f.write(line + "\\n")


    @kopf.on.startup()
    def configure(settings, **_):
        settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix="probe.laxai.io")
        settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
            prefix="probe.laxai.io", key="last-handled-configuration")
        settings.watching.server_timeout = 30


    @kopf.on.login()  # a fresh registry lacks kopf's implicit login handlers
    def login(**kwargs):
        return kopf.login_via_client(**kwargs)


    @kopf.on.create(*RESOURCE)
    def created(name, spec, body, patch, **_):
        record(f"create {name} deadline={spec.get('activeDeadlineSeconds')}")
        kopf.info(body, reason="Created", message="probe saw it")
        patch.status["phase"] = "running"
        patch.status["message"] = f"created with deadline={spec.get('activeDeadlineSeconds')}"


    @kopf.on.update(*RESOURCE, field="spec")
    def updated(name, old, new, patch, **_):
        record(f"update {name} deadline={old.get('activeDeadlineSeconds')}->{new.get('activeDeadlineSeconds')}")
        patch.status["message"] = f"updated deadline={new.get('activeDeadlineSeconds')}"


    @kopf.on.delete(*RESOURCE)
    def deleted(name, **_):
        record(f"delete {name}")
''')


def test_kopf_operator_handles_create_update_delete_exactly_once(kube_env: ThreadedKubeEmulator, tmp_path,
                                                                 monkeypatch):
    """create runs once and writes status, update sees the spec change, delete releases kopf's finalizer."""
    probe = tmp_path / "probe.log"
    probe.touch()
    monkeypatch.setenv("KOPF_PROBE_LOG", str(probe))
    operator = tmp_path / "probe_operator.py"
    operator.write_text(OPERATOR)
    custom = kubernetes.client.CustomObjectsApi(kube_env.api_client())
    args = ["run", "--standalone", "--namespace", "default", "--verbose", str(operator)]
    # kopf registers the probe's handlers in its process-wide default registry: use a throwaway one
    # (kopf run makes a given registry the default and never restores it), so no later test sees them.
    previous = kopf.get_default_registry()
    try:
        handled, events, runner = run_probe(args, kube_env, custom)
    finally:
        kopf.set_default_registry(previous)
    assert runner.exception is None, runner.output
    assert runner.exit_code == 0, runner.output
    assert probe.read_text().splitlines() == ["create probe deadline=101", "update probe deadline=101->103", "delete probe"]
    assert handled["status"]["phase"] == "running"
    assert handled["metadata"]["finalizers"] == ["kopf.zalando.org/KopfFinalizerMarker"]
    assert "probe.laxai.io/last-handled-configuration" in handled["metadata"]["annotations"]
    assert [(e["reason"], e["involvedObject"]["name"], e["involvedObject"]["uid"]) for e in events] == [
        ("Created", "probe", handled["metadata"]["uid"])]


def run_probe(args: list[str], kube_env: ThreadedKubeEmulator, custom: kubernetes.client.CustomObjectsApi
              ) -> tuple[dict, list[dict], kopf.testing.KopfRunner]:
    with kopf.testing.KopfRunner(args, timeout=60, registry=kopf.OperatorRegistry()) as runner:
        custom.create_namespaced_custom_object(GROUP, VERSION, "default", PLURAL, {
            "apiVersion": f"{GROUP}/{VERSION}", "kind": "TrainingJob",
            "metadata": {"name": "probe"}, "spec": {"tenant_id": "t1", "activeDeadlineSeconds": 101}})
        kube_env.wait_for_object(TJ, "default", "probe",
                                 lambda tj: tj.get("status", {}).get("message") == "created with deadline=101",
                                 timeout=30)
        custom.patch_namespaced_custom_object(GROUP, VERSION, "default", PLURAL, "probe", {"spec": {"activeDeadlineSeconds": 103}})
        handled = kube_env.wait_for_object(TJ, "default", "probe",
                                           lambda tj: tj.get("status", {}).get("message") == "updated deadline=103",
                                           timeout=30)
        events = kube_env.wait_for(lambda: kube_env.objects("v1/events", "default"), timeout=30,
                                   message="kopf's events")
        time.sleep(1)  # room for any duplicate handler run to show up
        custom.delete_namespaced_custom_object(GROUP, VERSION, "default", PLURAL, "probe")
        kube_env.wait_for(lambda: kube_env.get(TJ, "default", "probe") is None, timeout=30,
                          message="the TrainingJob to be deleted")
    return handled, events, runner
