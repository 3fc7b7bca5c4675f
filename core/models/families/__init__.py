"""Model families by name: the registry (:mod:`core.models.families.base`) and the
built-in registrations: MTRN (:mod:`.mtrn`), TSN (:mod:`.tsn`), the temporal transformer
(:mod:`.transformer`) and the released EPIC C1 TRN (:mod:`.c1trn`, served from a checkpoint
only), in that order.

    from core.models.families import get_family, family_names, register_family
    family = get_family("tsn")            # UserError naming the choices for an unknown name
"""

from typing import Iterable

from core.errors import UserError
from core.models.families.base import (
    AccuracyRow,
    FamilyCost,
    FamilyGame,
    ModelFamily,
    family_names,
    get_family,
    register_family,
    cpu_state,
    registered_families,
    unregister_family,
)
from core.models.families.mtrn import MTRNFamily
from core.models.families.tsn import TSNFamily
from core.models.families.transformer import TransformerFamily
from core.models.families.c1trn import C1TRNFamily  # after the trained families: the picker's order

# The model explained when none is named (Play Fair's), where the dataset has it: see default_model.
DEFAULT_FAMILY = MTRNFamily.name
DEFAULT_MODEL_WORDS = f"{DEFAULT_FAMILY} where the dataset has it, else the first of its models"  # the CLI's help


def default_model(available: Iterable[str]) -> str:
    """The model explained when none is named, among the family names ``available`` (a head
    set's ``models``, or every task's together): :data:`DEFAULT_FAMILY` when there, else the
    first registered family there (a dataset served by the C1 TRN alone explains it).
    UserError when none of them is registered."""
    names = set(available)
    if DEFAULT_FAMILY in names:
        return DEFAULT_FAMILY
    for family in registered_families():
        if family.name in names:
            return family.name
    raise UserError(f"No model of a registered family to explain (the heads have {sorted(names) or 'none'}).",
                    "Train the dataset's heads (its 'heads' step), or point its heads_dir at external heads.")

__all__ = ["DEFAULT_FAMILY", "DEFAULT_MODEL_WORDS", "default_model", "AccuracyRow", "FamilyCost", "FamilyGame", "ModelFamily", "MTRNFamily", "C1TRNFamily", "TSNFamily", "TransformerFamily", "cpu_state", "family_names", "get_family",
           "register_family", "registered_families", "unregister_family"]
