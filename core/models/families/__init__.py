"""Model families by name: the registry (:mod:`core.models.families.base`) and the
built-in registrations: MTRN (:mod:`.mtrn`), TSN (:mod:`.tsn`), the temporal transformer
(:mod:`.transformer`) and the released EPIC C1 TRN (:mod:`.c1trn`, served from a checkpoint
only), in that order.

    from core.models.families import get_family, family_names, register_family
    family = get_family("tsn")            # UserError naming the choices for an unknown name
"""

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

# The model explained when none is named (Play Fair's): the service's, the CLI's and the app's default.
DEFAULT_FAMILY = MTRNFamily.name

__all__ = ["DEFAULT_FAMILY", "AccuracyRow", "FamilyCost", "FamilyGame", "ModelFamily", "MTRNFamily", "C1TRNFamily", "TSNFamily", "TransformerFamily", "cpu_state", "family_names", "get_family",
           "register_family", "registered_families", "unregister_family"]
