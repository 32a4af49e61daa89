"""Iceberg row filters on one column, typed.

pyiceberg's predicate classes (EqualTo, In, ...) take `(column, value)` positionally at run time,
but each redeclares a pydantic field, so a type checker sees only the keyword `__init__` that
pydantic synthesises (`term=`, `value=` or `literals=`). These build the same predicates through
that keyword form, which both agree on."""

from __future__ import annotations

from collections.abc import Iterable

from pyiceberg.expressions import (
    BooleanExpression,
    EqualTo,
    GreaterThanOrEqual,
    In,
    LessThanOrEqual,
    Reference,
)
from pyiceberg.expressions.literals import literal

Value = str | int | float | bool


def equal_to(column: str, value: Value) -> BooleanExpression:
    return EqualTo(term=Reference(column), value=literal(value))


def is_in(column: str, values: Iterable[Value]) -> BooleanExpression:
    return In(term=Reference(column), literals={literal(v) for v in values})


def at_least(column: str, value: Value) -> BooleanExpression:
    return GreaterThanOrEqual(term=Reference(column), value=literal(value))


def at_most(column: str, value: Value) -> BooleanExpression:
    return LessThanOrEqual(term=Reference(column), value=literal(value))
