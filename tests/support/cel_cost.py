"""A conservative static cost bound for CRD ``x-kubernetes-validations`` rules.

The API server estimates each rule's worst-case cost when a CRD is written (cel-go's
``checker/cost.go`` over the schema's size bounds) and refuses a rule above
``StaticEstimatedCostLimit`` (10,000,000) after multiplying it by the largest number of
times it can run (the ``maxItems``/``maxProperties`` of the lists and maps above it), and the
CRD when the sum exceeds ``StaticEstimatedCRDCostLimit`` (100,000,000). Sources:
k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/validation/validation.go (the two
limits, ``getExpressionCost``, ``getCostErrorMessage``) and k8s.io/apiserver/pkg/apis/cel
(``MaxRequestSizeBytes`` = 3 MiB, the size assumed for anything without a bound).

This bound is never below cel-go's: every operation costs at least what cel-go charges
(cel-go charges 0.1 per byte or element traversed, this charges 1), a value's size counts
every nested element (cel-go counts only the outer one), and a missing bound is the whole
request. It is therefore stricter than the API server: a rule it refuses may still be one a
real API server accepts, never the other way round. Functions it does not know are refused
rather than guessed.

Also a small type check the API server's compiler does: a field selected on ``self`` or
``oldSelf`` must be declared in the schema (cel-go: ``undefined field 'x'``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import celpy
from lark import Token, Tree

STATIC_ESTIMATED_COST_LIMIT = 10_000_000
STATIC_ESTIMATED_CRD_COST_LIMIT = 100_000_000
#: Size of anything without maxLength/maxItems/maxProperties: the largest request body.
UNBOUNDED = 3 * 1024 * 1024

_PASS = {"expr", "conditionalor", "conditionaland", "relation", "addition", "multiplication", "unary",
         "member", "primary", "paren_expr"}
#: Methods charged as a walk over the target for each unit of their arguments (an upper bound
#: of cel-go's linear and product costs for these).
_LINEAR_METHODS = {"startsWith", "endsWith", "contains", "matches", "lowerAscii", "upperAscii", "trim",
                   "replace", "split", "join", "indexOf", "lastIndexOf", "substring", "charAt", "isSorted",
                   "sum", "min", "max"}
#: Optional values (optionalOldSelf): constant cost, the value keeps its schema.
_OPTIONAL_METHODS = {"hasValue", "value", "orValue"}
_MACROS = {"all", "exists", "exists_one", "filter", "map"}
_CONVERSIONS = {"int", "uint", "double", "string", "bool", "bytes", "duration", "timestamp", "type", "dyn"}


class RuleError(Exception):
    """A rule this module refuses: undefined field, unknown identifier or unbounded construct."""


@dataclass(frozen=True)
class _Val:
    cost: int  # upper bound of the cost of computing the value
    size: int  # upper bound of its size: bytes of a string, elements (recursively) of a collection
    node: dict[str, Any] | None = None  # its schema, when it is read from self/oldSelf


def size_bound(schema: dict[str, Any] | None) -> int:
    """Upper bound of the size of any value the schema admits (nested elements included)."""
    if schema is None or schema.get("x-kubernetes-preserve-unknown-fields") or schema.get("x-kubernetes-int-or-string"):
        return UNBOUNDED
    kind = schema.get("type")
    if kind == "string":
        if "maxLength" in schema:
            return int(schema["maxLength"])
        enum = schema.get("enum")  # the API server bounds an enum by its longest value
        return max(len(str(v)) for v in enum) if enum else UNBOUNDED
    if kind == "array":
        return min(UNBOUNDED, count_bound(schema) * (1 + size_bound(schema.get("items"))))
    if kind == "object":
        if "properties" in schema:
            return min(UNBOUNDED, sum(1 + size_bound(p) for p in schema["properties"].values()))
        if isinstance(schema.get("additionalProperties"), dict):
            return min(UNBOUNDED, count_bound(schema) * (2 + size_bound(schema["additionalProperties"])))
        return UNBOUNDED
    return 1


def count_bound(schema: dict[str, Any]) -> int:
    """How many elements a list or map can hold (the whole request when unbounded)."""
    bound = schema.get("maxItems") if schema.get("type") == "array" else schema.get("maxProperties")
    return int(bound) if bound is not None else UNBOUNDED


def _element(node: dict[str, Any] | None) -> dict[str, Any] | None:
    if node is None:
        return None
    if node.get("type") == "array":
        return node.get("items")
    if isinstance(node.get("additionalProperties"), dict):
        return {"type": "string"}  # iterating a map binds its keys (unbounded strings)
    return None


def _field(base: _Val, name: str) -> dict[str, Any] | None:
    node = base.node
    if node is None:
        return None
    if "properties" in node:
        if name not in node["properties"]:
            raise RuleError(f"undefined field '{name}'")
        return node["properties"][name]
    if isinstance(node.get("additionalProperties"), dict):
        return node["additionalProperties"]
    if node.get("x-kubernetes-preserve-unknown-fields"):
        return None
    raise RuleError(f"undefined field '{name}'")


class _Estimator:
    def __init__(self, schema: dict[str, Any]) -> None:
        self.env: dict[str, dict[str, Any] | None] = {"self": schema, "oldSelf": schema}

    def value(self, node: dict[str, Any] | None, cost: int) -> _Val:
        return _Val(cost, size_bound(node), node)

    def run(self, tree: Any) -> _Val:
        if isinstance(tree, Token):
            raise RuleError(f"unexpected token {tree!r}")
        kids = tree.children
        data = tree.data
        if data in _PASS and len(kids) == 1:
            return self.run(kids[0])
        handler = getattr(self, f"_{data}", None)
        if handler is None:
            raise RuleError(f"the emulator cannot bound the cost of {data!r} expressions")
        return handler(kids)

    # ---- operators
    def _expr(self, kids: list[Any]) -> _Val:  # cond ? a : b
        cond, a, b = (self.run(k) for k in kids)
        return _Val(cond.cost + max(a.cost, b.cost), max(a.size, b.size))

    def _logical(self, kids: list[Any]) -> _Val:
        a, b = (self.run(k) for k in kids)
        return _Val(a.cost + b.cost + 1, 1)

    _conditionalor = _conditionaland = _logical

    def _binary(self, kids: list[Any]) -> _Val:
        op, rhs_tree = kids
        lhs, rhs = self.run(op.children[0]), self.run(rhs_tree)
        base = lhs.cost + rhs.cost + 1
        if op.data in ("relation_eq", "relation_ne", "relation_lt", "relation_le", "relation_gt", "relation_ge"):
            return _Val(base + min(lhs.size, rhs.size), 1)
        if op.data == "relation_in":
            return _Val(base + rhs.size * (1 + lhs.size), 1)
        if op.data == "addition_add":  # string and list concatenation copy both sides
            return _Val(base + lhs.size + rhs.size, lhs.size + rhs.size)
        return _Val(base, 1)

    _relation = _addition = _multiplication = _binary

    def _unary(self, kids: list[Any]) -> _Val:
        operand = self.run(kids[-1])
        return _Val(operand.cost + len(kids) - 1, 1)

    # ---- members
    def _member_dot(self, kids: list[Any]) -> _Val:
        base = self.run(kids[0])
        return self.value(_field(base, str(kids[1])), base.cost + 1)

    def _member_index(self, kids: list[Any]) -> _Val:
        base, index = self.run(kids[0]), self.run(kids[1])
        node = base.node
        element = None
        if node is not None and node.get("type") == "array":
            element = node.get("items")
        elif node is not None and isinstance(node.get("additionalProperties"), dict):
            element = node["additionalProperties"]
        return self.value(element, base.cost + index.cost + 1)

    def _member_dot_arg(self, kids: list[Any]) -> _Val:
        target, method = kids[0], str(kids[1])
        args = kids[2].children if len(kids) > 2 else []
        base = self.run(target)
        if method in _MACROS:
            return self._macro(base, method, args)
        values = [self.run(a) for a in args]
        cost = base.cost + sum(v.cost for v in values) + 1
        if method in _LINEAR_METHODS:
            return _Val(cost + base.size * (1 + sum(v.size for v in values)), base.size + sum(v.size for v in values))
        if method in _OPTIONAL_METHODS:
            size = max([base.size] + [v.size for v in values])
            return _Val(cost, size, base.node if method != "hasValue" else None)
        if method == "size":
            return _Val(cost, 1)
        raise RuleError(f"the emulator cannot bound the cost of .{method}()")

    def _macro(self, base: _Val, method: str, args: list[Any]) -> _Val:
        variable = _identifier(args[0])
        count = count_bound(base.node) if base.node is not None else base.size
        saved = self.env.get(variable)
        self.env[variable] = _element(base.node)
        try:
            body = [self.run(a) for a in args[1:]]
        finally:
            if saved is None:
                self.env.pop(variable, None)
            else:
                self.env[variable] = saved
        return _Val(base.cost + count * (1 + sum(v.cost for v in body)), base.size)

    # ---- primaries
    def _ident(self, kids: list[Any]) -> _Val:
        name = str(kids[0])
        if name not in self.env:
            raise RuleError(f"undeclared reference to '{name}'")
        return self.value(self.env[name], 1)

    def _ident_arg(self, kids: list[Any]) -> _Val:
        name = str(kids[0])
        args = kids[1].children if len(kids) > 1 else []
        if name == "has":
            (arg,) = args
            select = _only_member_dot(arg)
            base = self.run(select.children[0])
            _field(base, str(select.children[1]))
            return _Val(base.cost + 1, 1)
        values = [self.run(a) for a in args]
        cost = sum(v.cost for v in values) + 1
        if name == "size":
            return _Val(cost, 1)
        if name in _CONVERSIONS:
            return _Val(cost + sum(v.size for v in values), max([v.size for v in values] + [1]))
        raise RuleError(f"the emulator cannot bound the cost of {name}()")

    def _list_lit(self, kids: list[Any]) -> _Val:
        values = [self.run(k) for k in (kids[0].children if kids else [])]
        return _Val(sum(v.cost for v in values) + 1, sum(1 + v.size for v in values))

    def _map_lit(self, kids: list[Any]) -> _Val:
        values = [self.run(k) for k in (kids[0].children if kids else [])]
        return _Val(sum(v.cost for v in values) + 1, sum(1 + v.size for v in values))

    def _literal(self, kids: list[Any]) -> _Val:
        token = kids[0]
        return _Val(0, max(1, len(str(token)) - 2) if "STRING" in token.type else 1)


def _only_member_dot(tree: Any) -> Tree:
    while isinstance(tree, Tree) and tree.data in _PASS and len(tree.children) == 1:
        tree = tree.children[0]
    if not (isinstance(tree, Tree) and tree.data == "member_dot"):
        raise RuleError("invalid argument to has() macro")
    return tree


def _identifier(tree: Any) -> str:
    while isinstance(tree, Tree) and len(tree.children) == 1:
        tree = tree.children[0]
    if isinstance(tree, Token) and tree.type == "IDENT":
        return str(tree)
    raise RuleError("a macro's first argument must be an identifier")


def rule_cost(rule: str, schema: dict[str, Any]) -> int:
    """Upper bound of one evaluation of ``rule`` with ``self`` at ``schema``.

    Raises ``celpy.CELParseError`` for a rule that does not parse and ``RuleError`` for one
    the estimator refuses (see the module docstring).
    """
    env = celpy.Environment()
    return _Estimator(schema).run(env.compile(rule)).cost


def cost_factor(cost: int, limit: int) -> str:
    """How the API server words "by factor of X" (validation.go getCostErrorMessage)."""
    factor = cost / limit
    if factor > 100:
        return "more than 100x"
    return f"{factor:f}x" if factor < 1.5 else f"{factor:.1f}x"
