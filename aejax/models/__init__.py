"""Networks behind one contract (see ``contract.py``) and the autoencoder that joins them."""
from __future__ import annotations

from aejax.models import conv, mlp  # noqa: F401  (registration)
from aejax.models.autoencoder import HEADS, OUTPUTS, Autoencoder
from aejax.models.contract import DECODERS, DTYPES, ENCODERS


def resolve_output(output: str, unit_range: bool) -> str:
    """``auto`` means sigmoid for data in [0, 1] and identity for real-valued data."""
    if output == "auto":
        return "sigmoid" if unit_range else "identity"
    return output


__all__ = ["Autoencoder", "DECODERS", "DTYPES", "ENCODERS", "HEADS", "OUTPUTS", "resolve_output"]
