"""ValidatingAdmissionPolicy (admissionregistration.k8s.io/v1, GA in Kubernetes 1.30) evaluated as
the API server's admission plugin does, from the policies and bindings stored in the emulator.

Semantics (https://kubernetes.io/docs/reference/access-authn-authz/validating-admission-policy/ and
the ValidatingAdmissionPolicy API reference):
- a binding (``spec.policyName``) applies its policy when the request matches the policy's
  ``matchConstraints`` and the binding's ``matchResources``: ``resourceRules`` on apiGroups,
  apiVersions, operations (a PATCH is an UPDATE), resources (``plural``, ``plural/sub``,
  ``plural/*``, ``*`` = no subresources, ``*/*``), scope and resourceNames; minus
  ``excludeResourceRules``. A binding whose policy does not exist is ignored;
- ``matchConditions``: any false → the policy is skipped; an error (none false) → failurePolicy;
- ``variables`` are evaluated lazily, by name, and cached; ``validations`` all run: a false one
  is a denial with its ``message`` (else ``messageExpression``, else ``failed expression: <expr>``)
  and ``reason`` (default ``Invalid``); an evaluation error is a denial under
  ``failurePolicy: Fail`` (the default) and ignored under ``Ignore``;
- ``validationActions``: ``Deny`` rejects, ``Warn`` adds a warning, ``Audit`` is not modelled
  (no audit log);
- CEL variables: ``object`` (null on DELETE), ``oldObject`` (null on CREATE), ``request``
  (AdmissionRequest: kind, resource, subResource, name, namespace, operation, userInfo, dryRun),
  ``params`` (null: paramKind is not supported and a policy using it is an emulator error),
  ``namespaceObject``, ``variables``. Of ``metadata`` only ``name`` and ``generateName`` are
  visible, as on a real server. ``authorizer`` is not provided: an expression naming it fails,
  which is stricter than the real server, never more lenient.
- the denial (k8s.io/apiserver validatingadmissionpolicy dispatcher): ``<resource>.<group>
  "<name>" is forbidden: ValidatingAdmissionPolicy '<policy>' with binding '<binding>' denied
  request: <message>``, code from the reason (Invalid 422, Forbidden 403, Unauthorized 401,
  RequestEntityTooLarge 413), the same text as the one ``details.causes`` message.

cel-python evaluates dynamically (the real server also type-checks against the schema); it has no
Kubernetes CEL extension libraries (strings ext, lists ext, regex ``matches`` semantics aside),
so a policy using them fails here rather than passing.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from typing import Any

import celpy

from tests.support.api_errors import ApiError, details_for
from tests.support.authn import UserInfo
from tests.support.kinds import Kind

ADMISSION = "admissionregistration.k8s.io/v1"
_CODES = {"Invalid": 422, "Forbidden": 403, "Unauthorized": 401, "RequestEntityTooLarge": 413}


class Unsupported(Exception):
    """A policy feature the emulator does not model (answered 500: a test must not rely on it)."""


@dataclass(frozen=True)
class Request:
    """One admission request: what the policy's ``request`` variable and matching are built from."""

    user: UserInfo
    operation: str  # CREATE, UPDATE, DELETE
    kind: Kind
    namespace: str | None
    name: str
    subresource: str = ""
    dry_run: bool = False

    def as_cel(self) -> dict[str, Any]:
        gvk = {"group": self.kind.group, "version": self.kind.version, "kind": self.kind.kind}
        gvr = {"group": self.kind.group, "version": self.kind.version, "resource": self.kind.plural}
        return {"kind": gvk, "resource": gvr, "subResource": self.subresource, "requestKind": gvk,
                "requestResource": gvr, "requestSubResource": self.subresource, "name": self.name,
                "namespace": self.namespace or "", "operation": self.operation,
                "userInfo": self.user.as_admission(), "dryRun": self.dry_run}


@functools.lru_cache(maxsize=256)
def _program(expression: str) -> celpy.Runner:
    env = celpy.Environment()
    return env.program(env.compile(expression))


def _visible(obj: dict[str, Any] | None) -> dict[str, Any] | None:
    """The object as CEL sees it: of metadata only name and generateName."""
    if obj is None:
        return None
    meta = {k: v for k, v in (obj.get("metadata") or {}).items() if k in ("name", "generateName")}
    return {**obj, "metadata": meta}


def _rule_matches(rule: dict[str, Any], req: Request) -> bool:
    def listed(values: list[str] | None, value: str) -> bool:
        return bool(values) and ("*" in values or value in values)

    if not listed(rule.get("operations"), req.operation) or not listed(rule.get("apiGroups"), req.kind.group):
        return False
    if not listed(rule.get("apiVersions"), req.kind.version):
        return False
    wanted = f"{req.kind.plural}/{req.subresource}" if req.subresource else req.kind.plural
    resources = rule.get("resources") or []
    if not any(r == wanted or r == "*/*" or (r == "*" and not req.subresource)
               or (req.subresource and r in (f"{req.kind.plural}/*", f"*/{req.subresource}")) for r in resources):
        return False
    scope = rule.get("scope") or "*"
    if scope != "*" and scope != ("Namespaced" if req.kind.namespaced else "Cluster"):
        return False
    names = rule.get("resourceNames") or []
    return not names or req.name in names


def _matches(resources: dict[str, Any] | None, req: Request) -> bool:
    if not resources:
        return True
    for selector in ("namespaceSelector", "objectSelector"):
        if resources.get(selector):
            raise Unsupported(f"matchResources.{selector} is not modelled by the emulator")
    rules = resources.get("resourceRules")
    if rules is not None and not any(_rule_matches(r, req) for r in rules):
        return False
    return not any(_rule_matches(r, req) for r in resources.get("excludeResourceRules") or [])


class _Evaluation:
    """The CEL activation of one policy for one request, with lazily evaluated ``variables``."""

    def __init__(self, policy: dict[str, Any], req: Request, old: dict[str, Any] | None,
                 new: dict[str, Any] | None, namespace_object: dict[str, Any] | None) -> None:
        self.definitions = {v["name"]: v["expression"] for v in policy["spec"].get("variables") or []}
        self.values: dict[str, Any] = {}
        self.base = {"object": _visible(new), "oldObject": _visible(old), "request": req.as_cel(),
                     "params": None, "namespaceObject": namespace_object}

    def _variable(self, name: str) -> Any:
        if name not in self.values:
            if name not in self.definitions:
                raise celpy.CELEvalError(f"no such variable: variables.{name}")
            self.values[name] = self.evaluate(self.definitions[name])
        return self.values[name]

    def evaluate(self, expression: str) -> Any:
        activation = {k: celpy.json_to_cel(v) for k, v in self.base.items()}
        used = set(re.findall(r"\bvariables\.([A-Za-z_][A-Za-z0-9_]*)", expression))
        activation["variables"] = celpy.celtypes.MapType(
            {celpy.celtypes.StringType(n): self._variable(n) for n in used})
        result = _program(expression).evaluate(activation)
        if isinstance(result, celpy.CELEvalError):
            raise result
        return result


def _is_true(value: Any) -> bool:
    return isinstance(value, celpy.celtypes.BoolType) and bool(value)


@dataclass(frozen=True)
class Decision:
    policy: str
    binding: str
    message: str
    reason: str


def _decide(policy: dict[str, Any], binding: str, evaluation: _Evaluation) -> Decision | None:
    """The first denial of one applicable policy, or None (admitted or skipped)."""
    spec = policy["spec"]
    fail = (spec.get("failurePolicy") or "Fail") == "Fail"
    name = policy["metadata"]["name"]
    errors = []
    for condition in spec.get("matchConditions") or []:
        try:
            if not _is_true(evaluation.evaluate(condition["expression"])):
                return None
        except Exception as exc:  # noqa: BLE001  (any CEL failure is an evaluation error)
            errors.append(f"expression '{condition['expression']}' resulted in error: {exc}")
    if errors:
        return Decision(name, binding, errors[0], "Invalid") if fail else None
    for validation in spec.get("validations") or []:
        expression = validation["expression"]
        try:
            holds = _is_true(evaluation.evaluate(expression))
        except Exception as exc:  # noqa: BLE001
            if fail:
                return Decision(name, binding, f"expression '{expression}' resulted in error: {exc}", "Invalid")
            continue
        if not holds:
            message = validation.get("message")
            if not message and validation.get("messageExpression"):
                try:
                    message = str(evaluation.evaluate(validation["messageExpression"]))
                except Exception:  # noqa: BLE001  (the real server falls back to the default message)
                    message = None
            return Decision(name, binding, message or f"failed expression: {expression}",
                            validation.get("reason") or "Invalid")
    return None


def admit(store: Any, req: Request, old: dict[str, Any] | None, new: dict[str, Any] | None,
          warnings: list[str]) -> None:
    """Run every bound ValidatingAdmissionPolicy on one request; raise the API server's denial."""
    policies = {p["metadata"]["name"]: p for p in store.live(store.kind(f"{ADMISSION}/validatingadmissionpolicies"))}
    namespace_object = None
    if req.namespace:
        namespace_object = store.current(store.kind("v1/namespaces"), None, req.namespace)
    for binding in store.live(store.kind(f"{ADMISSION}/validatingadmissionpolicybindings")):
        spec = binding.get("spec") or {}
        policy = policies.get(spec.get("policyName"))
        if policy is None:
            continue
        if policy["spec"].get("paramKind") or spec.get("paramRef"):
            raise Unsupported("paramKind/paramRef is not modelled by the emulator")
        if not (_matches(policy["spec"].get("matchConstraints"), req) and _matches(spec.get("matchResources"), req)):
            continue
        decision = _decide(policy, binding["metadata"]["name"], _Evaluation(policy, req, old, new, namespace_object))
        if decision is None:
            continue
        actions = spec.get("validationActions") or []
        if not actions:  # a real API server refuses to store such a binding
            raise Unsupported(f"binding {binding['metadata']['name']} has no validationActions (invalid)")
        text = (f"ValidatingAdmissionPolicy '{decision.policy}' with binding '{decision.binding}' denied request: "
                f"{decision.message}")
        if "Warn" in actions:
            warnings.append(f"Validation failed for ValidatingAdmissionPolicy '{decision.policy}' with binding "
                            f"'{decision.binding}': {decision.message}")
        if "Deny" in actions:
            details = details_for(req.kind, req.name) | {"causes": [{"message": text}]}
            raise ApiError(_CODES.get(decision.reason, 422), decision.reason,
                           f'{req.kind.qualified} "{req.name}" is forbidden: {text}', details)
