"""The FDIWN network: blocks, variants, and the folded inference form."""

from .fdiwn import FDIWN, SCALES, VARIANTS, Variant, VariantName, check_config, count_parameters

__all__ = ["FDIWN", "SCALES", "VARIANTS", "Variant", "VariantName", "check_config", "count_parameters"]
