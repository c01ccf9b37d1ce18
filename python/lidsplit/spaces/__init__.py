"""Built-in search spaces: NAS-Bench-201, DARTS, MobileNet/ProxylessNAS supernets (small defaults), and
TangleNAS's weight-entangled spaces: ``nb201(entangled=True)``, ``mobilenet(entangled=True)``,
``toy_macro`` (the conv-macro toy space) and ``transformer`` (a character-level GPT)."""

from __future__ import annotations

from lidsplit.spaces.common import Supernet

# nb201 first: the order the modules register their builders is the order of space_names()
from lidsplit.spaces.nb201 import (
    NB201_EDGES,
    NB201_OPS,
    NB201_SPACE,
    NB201EntangledEdge,
    NB201Supernet,
    from_nb201_string,
    nb201,
    to_nb201_string,
)
from lidsplit.spaces.darts import (
    DARTS_OPS,
    DARTS_SPACE,
    Genotype,
    arch_to_genotype,
    canonical_genotype,
    darts,
    darts_space,
    derive_genotype,
    genotype_to_arch,
    parse_genotype,
)
from lidsplit.spaces.mobilenet import EntangledMBConv, MobileNetSupernet, mobilenet
from lidsplit.spaces.toy_macro import TOY_CHANNELS, TOY_KERNELS, ToyMacro, toy_macro
from lidsplit.spaces.transformer import TangleGPT, lm_loss, transformer

from lidsplit.spaces.registry import BUILDERS as _BUILDERS  # the old private name, kept for one release
from lidsplit.spaces.registry import build, register_space, space_names

#: the registered names (``space_names()``), kept for one release
SPACES: tuple[str, ...] = space_names()


__all__ = [
    "DARTS_OPS",
    "DARTS_SPACE",
    "Genotype",
    "NB201_EDGES",
    "NB201_OPS",
    "NB201_SPACE",
    "SPACES",
    "Supernet",
    "arch_to_genotype",
    "build",
    "register_space",
    "space_names",
    "canonical_genotype",
    "darts",
    "darts_space",
    "derive_genotype",
    "from_nb201_string",
    "genotype_to_arch",
    "mobilenet",
    "nb201",
    "parse_genotype",
    "to_nb201_string",
    "EntangledMBConv",
    "MobileNetSupernet",
    "NB201EntangledEdge",
    "NB201Supernet",
    "TOY_CHANNELS",
    "TOY_KERNELS",
    "TangleGPT",
    "ToyMacro",
    "lm_loss",
    "toy_macro",
    "transformer",
]
