"""The resource kinds the emulator serves: kmock's bundled built-ins plus CRDs read from YAML."""

from __future__ import annotations

import copy
import functools
import pathlib
import warnings
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import kmock
import yaml

from tests.support.crd_schema import CrdSchema

REPO_ROOT = pathlib.Path(__file__).resolve().parents[2]
TRAININGJOB_CRD = REPO_ROOT / "crds" / "trainingjob.yaml"
ALL_VERBS = ("create", "delete", "deletecollection", "get", "list", "patch", "update", "watch")


@dataclass(frozen=True, eq=False)
class Kind:
    """One served resource (group/version/plural) and what the API server knows about it."""

    group: str
    version: str
    plural: str
    kind: str
    namespaced: bool
    singular: str = ""
    short_names: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()
    verbs: tuple[str, ...] = ALL_VERBS
    subresources: frozenset[str] = frozenset()
    schema: CrdSchema | None = field(default=None, repr=False)
    custom: bool = False  # served from a CustomResourceDefinition

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.group, self.version, self.plural)

    @functools.cached_property
    def resource(self) -> kmock.resource:  # cached: kmock.resource() is slow to construct
        return kmock.resource(self.group, self.version, self.plural)

    @property
    def qualified(self) -> str:
        """``jobs.batch``, ``pods``: how the API server names the resource in messages."""
        return f"{self.plural}.{self.group}" if self.group else self.plural

    @property
    def has_status(self) -> bool:
        return "status" in self.subresources

    def describe(self) -> str:
        return f"{self.api_version}/{self.plural}"


@functools.cache
def builtin_kinds() -> tuple[Kind, ...]:
    """kmock's bundled discovery data of a recent cluster's built-in resources (read once)."""
    bundled = kmock.KubernetesEmulator().resources
    with warnings.catch_warnings():  # kmock 0.8 uses the deprecated importlib.resources.read_binary
        warnings.simplefilter("ignore", DeprecationWarning)
        bundled.load_bundled()
    kinds = []
    for resource in bundled:
        info = bundled[resource]
        kinds.append(Kind(
            group=resource.group, version=resource.version, plural=resource.plural,
            kind=info.kind or resource.plural.capitalize(),
            namespaced=bool(info.namespaced),
            singular=info.singular or "",
            short_names=tuple(sorted(info.shortnames)),
            categories=tuple(sorted(info.categories)),
            verbs=tuple(sorted(info.verbs)) or ALL_VERBS,
            subresources=frozenset(info.subresources),
        ))
    return tuple(kinds)


def kinds_from_crd(crd: dict[str, Any]) -> list[Kind]:
    """Every served version of a CustomResourceDefinition, with its schema and subresources."""
    spec = crd["spec"]
    names = spec["names"]
    kinds = []
    for version in spec["versions"]:
        if not version.get("served", True):
            continue
        schema = ((version.get("schema") or {}).get("openAPIV3Schema"))
        kinds.append(Kind(
            group=spec["group"], version=version["name"], plural=names["plural"], kind=names["kind"],
            namespaced=spec.get("scope", "Namespaced") == "Namespaced",
            singular=names.get("singular", names["kind"].lower()),
            short_names=tuple(names.get("shortNames") or ()),
            categories=tuple(names.get("categories") or ()),
            subresources=frozenset((version.get("subresources") or {}).keys()),
            schema=CrdSchema(schema) if schema else None,
            custom=True,
        ))
    return kinds


def load_crds(paths: Iterable[str | pathlib.Path]) -> list[dict[str, Any]]:
    """All CustomResourceDefinition documents in the given YAML files (parsed once per file version)."""
    crds = []
    for path in paths:
        stat = pathlib.Path(path).stat()
        crds.extend(copy.deepcopy(_parse_crds(str(pathlib.Path(path).resolve()), stat.st_mtime_ns, stat.st_size)))
    return crds


@functools.cache
def _parse_crds(path: str, mtime_ns: int, size: int) -> tuple[dict[str, Any], ...]:
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    docs = yaml.load_all(pathlib.Path(path).read_text(), Loader=loader)
    return tuple(doc for doc in docs if doc and doc.get("kind") == "CustomResourceDefinition")
