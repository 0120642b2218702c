"""Authentication for the emulator: bearer tokens → the user a real API server would see.

Modelled on the Kubernetes authentication docs (https://kubernetes.io/docs/reference/access-authn-authz/authentication/):
- a ServiceAccount token authenticates as ``system:serviceaccount:<namespace>:<name>`` with the
  groups ``system:serviceaccounts``, ``system:serviceaccounts:<namespace>`` and ``system:authenticated``;
- a pod-bound token (what the kubelet projects into a pod; TokenRequest with a bound Pod) adds the
  user extras ``authentication.kubernetes.io/pod-name``, ``…/pod-uid`` and ``…/credential-id``
  (``JTI=<id>``), as SelfSubjectReview shows on v1.32 (../shared/REAL_K8S_FACTS.md, Auth);
- a request without credentials is ``system:anonymous`` in ``system:unauthenticated`` (anonymous
  auth is on by default); an unknown token is refused with 401 ``Unauthorized``, never anonymous.
"""

from __future__ import annotations

import secrets
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field

from tests.support.api_errors import ApiError

EXTRA_POD_NAME = "authentication.kubernetes.io/pod-name"
EXTRA_POD_UID = "authentication.kubernetes.io/pod-uid"
EXTRA_CREDENTIAL_ID = "authentication.kubernetes.io/credential-id"
ANONYMOUS = "system:anonymous"


@dataclass(frozen=True)
class UserInfo:
    """The authenticated identity of a request (authentication.k8s.io/v1 UserInfo)."""

    username: str
    uid: str = ""
    groups: tuple[str, ...] = ()
    extra: Mapping[str, tuple[str, ...]] = field(default_factory=dict)

    def as_admission(self) -> dict[str, object]:
        """``request.userInfo`` as admission (and a ValidatingAdmissionPolicy's CEL) sees it."""
        return {"username": self.username, "uid": self.uid, "groups": list(self.groups),
                "extra": {k: list(v) for k, v in self.extra.items()}}


def admin() -> UserInfo:
    """A cluster admin: ``system:masters`` bypasses authorization, as kubeadm's admin.conf user did."""
    return UserInfo("kubernetes-admin", groups=("system:masters", "system:authenticated"))


def service_account(namespace: str, name: str, *, pod_name: str | None = None, pod_uid: str | None = None,
                    sa_uid: str | None = None) -> UserInfo:
    """A ServiceAccount token's user; with ``pod_name``, a pod-bound token's (user extras set)."""
    extra: dict[str, tuple[str, ...]] = {}
    if pod_name is not None:
        extra = {EXTRA_CREDENTIAL_ID: (f"JTI={uuid.uuid4()}",), EXTRA_POD_NAME: (pod_name,),
                 EXTRA_POD_UID: (pod_uid or str(uuid.uuid4()),)}
    return UserInfo(f"system:serviceaccount:{namespace}:{name}", uid=sa_uid or str(uuid.uuid4()),
                    groups=("system:serviceaccounts", f"system:serviceaccounts:{namespace}", "system:authenticated"),
                    extra=extra)


class TokenAuthenticator:
    """Bearer token → user. ``issue`` mints an opaque token for a user (as TokenRequest would)."""

    def __init__(self) -> None:
        self._tokens: dict[str, UserInfo] = {}

    def issue(self, user: UserInfo) -> str:
        token = secrets.token_urlsafe(24)
        self._tokens[token] = user
        return token

    def authenticate(self, authorization: str | None) -> UserInfo:
        if not authorization:
            return UserInfo(ANONYMOUS, groups=("system:unauthenticated",))
        scheme, _, token = authorization.partition(" ")
        user = self._tokens.get(token.strip()) if scheme.lower() == "bearer" else None
        if user is None:
            raise ApiError(401, "Unauthorized", "Unauthorized")
        return user
