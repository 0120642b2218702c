import pytest
from pydantic import ValidationError

from laxai_api.settings import ApiSettings, pod_namespace


def test_pod_namespace(tmp_path):
    path = tmp_path / "namespace"
    assert pod_namespace(path) == "default"
    path.write_text("laxai\n")
    assert pod_namespace(path) == "laxai"


def test_settings_from_the_environment(monkeypatch, tmp_path):
    for name, value in {"LAXAI_BACKEND": "kubernetes", "LAXAI_NAMESPACE": "team-a", "LAXAI_AUTH_ENABLED": "true",
                        "LAXAI_MAX_CONCURRENT_JOBS": "3", "LAXAI_CANCEL_GRACE_SECONDS": "5",
                        "LAXAI_TRAINER_COMMAND": "python -m laxai_trainer.cli",
                        "LAXAI_API_KEYS_FILE": str(tmp_path / "keys.json")}.items():
        monkeypatch.setenv(name, value)
    settings = ApiSettings()
    assert (settings.backend, settings.namespace, settings.auth_enabled) == ("kubernetes", "team-a", True)
    assert (settings.max_concurrent_jobs, settings.cancel_grace_seconds) == (3, 5.0)
    assert settings.trainer_argv() == ["python", "-m", "laxai_trainer.cli"]
    assert settings.api_keys_file == tmp_path / "keys.json"


@pytest.mark.parametrize(("field", "value"), [("trainer_command", "  "), ("max_concurrent_jobs", -1),
                                              ("cancel_grace_seconds", -1), ("backend", "docker")])
def test_invalid_settings_name_the_field(field, value):
    with pytest.raises(ValidationError, match=field):
        ApiSettings(**{field: value})
