"""Opt-in access control for the emulator, in the API server's order: authentication (401),
authorization by RBAC (403), then — for writes, after schema validation — validating admission
(ValidatingAdmissionPolicies). Off by default: every request is then a cluster admin's.

    access = AccessControl()
    with ThreadedKubeEmulator(access=access) as emu:
        token = access.tokens.issue(authn.service_account("laxai", "laxai-trainer", pod_name="tj-a-x7k2p"))
        client = emu.api_client(token=token)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from tests.support import admission, rbac
from tests.support.authn import TokenAuthenticator, UserInfo
from tests.support.kinds import Kind


@dataclass
class AccessControl:
    tokens: TokenAuthenticator = field(default_factory=TokenAuthenticator)
    #: Every 403 answered, as (user, message): a test can assert none happened.
    denials: list[tuple[str, str]] = field(default_factory=list)

    def authenticate(self, authorization: str | None) -> UserInfo:
        return self.tokens.authenticate(authorization)

    def authorize(self, store: Any, user: UserInfo, method: str, path: str, params: dict[str, str],
                  group: str | None, plural: str | None, namespace: str | None, name: str | None,
                  subresource: str | None) -> None:
        if plural is None:  # a non-resource request: its verb is the lowercased HTTP method
            attrs = rbac.Attributes(user, method.lower(), path=path, resource_request=False)
        else:
            verb = rbac.request_verb(method, name, params)
            if not name and verb in ("list", "watch"):
                name = rbac.name_from_field_selector(params)
            attrs = rbac.Attributes(user, verb, group or "", plural, subresource or "", namespace or "", name or "")
        try:
            rbac.RbacAuthorizer(store).authorize(attrs)
        except Exception as exc:
            self.denials.append((user.username, str(exc)))
            raise

    def admit(self, store: Any, user: UserInfo, operation: str, kind: Kind, namespace: str | None, name: str,
              subresource: str | None, old: dict[str, Any] | None, new: dict[str, Any] | None, *,
              dry_run: bool, warnings: list[str]) -> None:
        request = admission.Request(user, operation, kind, namespace, name, subresource or "", dry_run)
        try:
            admission.admit(store, request, old, new, warnings)
        except admission.Unsupported:
            raise
        except Exception as exc:
            self.denials.append((user.username, str(exc)))
            raise
