"""tests.support.authn: tokens authenticate as the users a real API server reports."""

from __future__ import annotations

import pytest

from tests.support import authn
from tests.support.api_errors import ApiError


def test_service_account_and_pod_bound_users():
    tokens = authn.TokenAuthenticator()
    plain = tokens.authenticate(f"Bearer {tokens.issue(authn.service_account('laxai', 'trainer'))}")
    assert plain.username == "system:serviceaccount:laxai:trainer"
    assert plain.groups == ("system:serviceaccounts", "system:serviceaccounts:laxai", "system:authenticated")
    assert plain.extra == {}
    bound = tokens.authenticate(f"Bearer {tokens.issue(authn.service_account('laxai', 'trainer', pod_name='p-1'))}")
    assert bound.extra[authn.EXTRA_POD_NAME] == ("p-1",)
    assert set(bound.extra) == {authn.EXTRA_POD_NAME, authn.EXTRA_POD_UID, authn.EXTRA_CREDENTIAL_ID}
    assert bound.extra[authn.EXTRA_CREDENTIAL_ID][0].startswith("JTI=")
    assert bound.as_admission()["extra"][authn.EXTRA_POD_NAME] == ["p-1"]


def test_no_token_is_anonymous_and_a_bad_token_is_401():
    tokens = authn.TokenAuthenticator()
    assert tokens.authenticate(None) == authn.UserInfo("system:anonymous", groups=("system:unauthenticated",))
    for header in ("Bearer nope", "Basic dXNlcjpwdw==", f"Token {tokens.issue(authn.admin())}"):
        with pytest.raises(ApiError) as exc:
            tokens.authenticate(header)
        assert (exc.value.code, exc.value.reason) == (401, "Unauthorized")
