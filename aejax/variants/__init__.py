"""Variants: training objectives composed from terms (corruption, reconstruction, regularizers)."""
from aejax.variants.losses import RECON_LOSSES, bce, mse
from aejax.variants.objective import Objective
from aejax.variants.terms import TERMS
from aejax.variants import codes  # noqa: F401,E402  (registers the auxk, l0 and commitment terms)

__all__ = ["Objective", "RECON_LOSSES", "TERMS", "bce", "mse"]
