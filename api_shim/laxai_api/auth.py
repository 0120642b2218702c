"""API keys: each bound to one tenant, or to all (``"*"``, admin).

Keys come from a JSON file (the Helm chart mounts a Secret as ``keys.json``; it is
re-read when it changes, so a rotated Secret applies without a restart) and/or an
environment variable. They are compared in constant time and never logged.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
from dataclasses import dataclass
from pathlib import Path

from fastapi import Request

from laxai_api.errors import Forbidden, Unauthorized
from laxai_api.settings import ApiSettings

ADMIN = "*"


@dataclass(frozen=True)
class Principal:
    """Who is calling: a tenant, or an admin (tenant None) who may act for every tenant."""

    tenant: str | None

    @property
    def admin(self) -> bool:
        return self.tenant is None

    def can_access(self, tenant_id: str) -> bool:
        return self.admin or hmac.compare_digest(self.tenant.encode(), tenant_id.encode())

    def require_tenant(self, tenant_id: str) -> None:
        """403 when the caller names a tenant that is not its own."""
        if not self.can_access(tenant_id):
            raise Forbidden(
                "This API key may not act for another tenant", {"tenant_id": tenant_id}
            )


ANONYMOUS_ADMIN = Principal(tenant=None)


def parse_keys(text: str, source: str) -> dict[str, str]:
    """``{"key": "tenant" | "*"}``; the error names the source, never the content."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"{source}: not valid JSON (line {exc.lineno}, column {exc.colno})") from None
    if not isinstance(data, dict) or not all(
        isinstance(k, str) and k and isinstance(v, str) and v for k, v in data.items()
    ):
        raise ValueError(f'{source}: expected a JSON object {{"<key>": "<tenant_id>" or "*"}}')
    return data


class KeyStore:
    def __init__(self, settings: ApiSettings):
        self.enabled = settings.auth_enabled
        self._file = settings.api_keys_file
        self._env_keys = (
            parse_keys(settings.api_keys.get_secret_value(), "LAXAI_API_KEYS") if settings.api_keys else {}
        )
        self._file_keys: dict[str, str] = {}
        self._file_stamp: tuple[float, int] | None = None
        self._digests: list[tuple[bytes, str]] = []
        self._refresh()
        if self.enabled and not self._digests:
            raise ValueError("LAXAI_AUTH_ENABLED is set but no API keys are configured "
                             "(LAXAI_API_KEYS_FILE or LAXAI_API_KEYS)")

    def _refresh(self) -> None:
        if self._file is not None:
            stat = os.stat(self._file)  # a missing keys file is a configuration error
            stamp = (stat.st_mtime, stat.st_size)
            if stamp != self._file_stamp:
                self._file_keys = parse_keys(Path(self._file).read_text(), str(self._file))
                self._file_stamp = stamp
                self._rebuild()
        elif not self._digests:
            self._rebuild()

    def _rebuild(self) -> None:
        # Digests have one length, so compare_digest's time depends on nothing secret.
        merged = {**self._file_keys, **self._env_keys}
        self._digests = [(hashlib.sha256(k.encode()).digest(), v) for k, v in merged.items()]

    def lookup(self, key: str) -> Principal | None:
        try:
            self._refresh()
        except (OSError, ValueError):
            pass  # keep the last good keys while a Secret is being rewritten
        digest = hashlib.sha256(key.encode()).digest()
        found: str | None = None
        for candidate, tenant in self._digests:  # no early exit: same work for every key
            if hmac.compare_digest(candidate, digest):
                found = tenant
        if found is None:
            return None
        return Principal(tenant=None if found == ADMIN else found)


def presented_key(request: Request) -> str | None:
    key = request.headers.get("x-api-key")
    if key:
        return key
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return token.strip()
    return None


def authenticate(store: KeyStore, request: Request) -> Principal:
    if not store.enabled:
        return ANONYMOUS_ADMIN
    key = presented_key(request)
    if key is None:
        raise Unauthorized(
            "An API key is required (header X-API-Key or Authorization: Bearer)",
            headers={"WWW-Authenticate": "Bearer"},
        )
    principal = store.lookup(key)
    if principal is None:
        raise Unauthorized("Invalid API key", headers={"WWW-Authenticate": "Bearer"})
    return principal
