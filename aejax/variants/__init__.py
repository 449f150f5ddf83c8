"""Variants: training objectives built from terms (reconstruction, regularizers, corruption)."""
from aejax.variants.losses import RECON_LOSSES, bce, mse
from aejax.variants.objective import Objective, build_objective

__all__ = ["Objective", "RECON_LOSSES", "bce", "build_objective", "mse"]
