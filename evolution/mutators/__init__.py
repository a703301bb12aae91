"""Behaviour-preserving AST rewrites, the offline mutators of the generator.

Each rewrite lives in its own module; this package lists them in a fixed order so every
node scans, ranks and names them the same way.  A new rewrite subclasses
:class:`CstMutator` (``kinds``, ``match``, optionally ``applies``) and joins
``ALL_MUTATORS`` here.
"""

from __future__ import annotations

from evolution.errors import MutationError
from evolution.mutators.add_slots import AddSlots
from evolution.mutators.alias_data import AliasData
from evolution.mutators.any_all_generator import AnyAllGenerator
from evolution.mutators.base import CstMutator, Finding, Mutator, Scan, Site
from evolution.mutators.chain_alias import ChainAlias
from evolution.mutators.comprehension import Comprehension
from evolution.mutators.dunder_operator import DunderOperator
from evolution.mutators.forward_attr import ForwardAttr
from evolution.mutators.genexpr_forms import GenexprForms
from evolution.mutators.hoist_invariant import HoistInvariant
from evolution.mutators.inline_body import InlineBody
from evolution.mutators.inline_call import InlineCall
from evolution.mutators.inline_method import InlineMethod
from evolution.mutators.inline_property import InlineProperty
from evolution.mutators.join_concat import JoinConcat
from evolution.mutators.local_alias import LocalAlias
from evolution.mutators.memoize import Memoize
from evolution.mutators.min_max_pair import MinMaxPair
from evolution.mutators.min_max_sorted import MinMaxSorted
from evolution.mutators.precompile_regex import PrecompileRegex
from evolution.mutators.set_membership import SetMembership

ALL_MUTATORS: tuple[Mutator, ...] = (
    SetMembership(),
    HoistInvariant(),
    JoinConcat(),
    PrecompileRegex(),
    Memoize(),
    LocalAlias(),
    MinMaxSorted(),
    Comprehension(),
    AnyAllGenerator(),
    GenexprForms(),
    InlineCall(),
    AliasData(),
    DunderOperator(),
    InlineBody(),
    InlineProperty(),
    MinMaxPair(),
    AddSlots(),
    ChainAlias(),
    InlineMethod(),
    ForwardAttr(),
)

_BY_NAME = {m.name: m for m in ALL_MUTATORS}


def by_name(name: str) -> Mutator:
    """The mutator called ``name``; plans and logged candidates refer to mutators by name."""
    try:
        return _BY_NAME[name]
    except KeyError:
        known = ", ".join(sorted(_BY_NAME))
        raise MutationError(f"unknown mutator {name!r}", hint=f"use one of: {known}") from None


__all__ = ["ALL_MUTATORS", "CstMutator", "Finding", "Mutator", "Scan", "Site", "by_name"]
