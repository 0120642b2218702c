"""Job backends: one interface (:class:`~laxai_api.backends.base.Backend`), chosen by LAXAI_BACKEND."""

from __future__ import annotations

from laxai_api.backends.base import Backend
from laxai_api.settings import ApiSettings


def make_backend(settings: ApiSettings) -> Backend:
    if settings.backend == "kubernetes":
        from laxai_api.backends.kubernetes import KubernetesBackend

        return KubernetesBackend(settings)
    from laxai_api.backends.local import LocalBackend

    return LocalBackend(settings)
