"""API keys: parsing, file reload, lookup (the HTTP matrix is in test_app.py)."""

import json
import os

import pytest

from laxai_api.auth import KeyStore, Principal, parse_keys
from laxai_api.settings import ApiSettings


def test_parse_keys_errors_never_echo_the_content():
    with pytest.raises(ValueError) as info:
        parse_keys('{"sk-secret": ', "keys.json")
    assert "sk-secret" not in str(info.value) and "keys.json" in str(info.value)
    with pytest.raises(ValueError, match="expected a JSON object"):
        parse_keys('["sk-secret"]', "LAXAI_API_KEYS")
    with pytest.raises(ValueError, match="expected a JSON object"):
        parse_keys('{"k": 3}', "LAXAI_API_KEYS")


def test_lookup_binds_keys_to_tenants_and_admin(tmp_path):
    keys = tmp_path / "keys.json"
    keys.write_text(json.dumps({"k-one": "tenant1", "k-admin": "*"}))
    store = KeyStore(ApiSettings(auth_enabled=True, api_keys_file=keys, api_keys='{"k-env": "tenant2"}'))
    assert store.lookup("k-one") == Principal("tenant1")
    assert store.lookup("k-admin").admin
    assert store.lookup("k-env") == Principal("tenant2")
    assert store.lookup("k-on") is None and store.lookup("") is None


def test_a_rotated_keys_file_applies_without_restart(tmp_path):
    keys = tmp_path / "keys.json"
    keys.write_text(json.dumps({"old": "tenant1"}))
    store = KeyStore(ApiSettings(auth_enabled=True, api_keys_file=keys))
    assert store.lookup("old") is not None
    keys.write_text(json.dumps({"new-key": "tenant1"}))
    os.utime(keys, (1, 1))  # a new mtime even within the same clock tick
    assert store.lookup("old") is None and store.lookup("new-key") == Principal("tenant1")
    keys.write_text("{broken")  # mid-rewrite: the last good keys stay
    os.utime(keys, (2, 2))
    assert store.lookup("new-key") == Principal("tenant1")


def test_auth_on_without_keys_refuses_to_start():
    with pytest.raises(ValueError, match="no API keys"):
        KeyStore(ApiSettings(auth_enabled=True))


def test_settings_repr_hides_keys():
    settings = ApiSettings(api_keys='{"sk-secret": "*"}')
    assert "sk-secret" not in repr(settings) and "sk-secret" not in str(settings.model_dump())


def test_principal_access():
    assert Principal("a").can_access("a") and not Principal("a").can_access("b")
    assert Principal(None).can_access("anything")
