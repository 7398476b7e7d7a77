"""Social-bias association tests: WEAT (Caliskan et al., 2017) and SEAT (May et al., 2019).

Texts (words or template sentences) become vectors with :func:`encode` (a sentence encoder or a
causal LM, pooled), :func:`weat` measures how much more target set X than Y associates with
attribute set A than B, and :func:`run_bias` runs the SEAT test files and writes a report.
"""

from lmboost.bias.encoders import CAUSAL_POOLINGS, ENCODER_POOLINGS, POOLINGS, encode
from lmboost.bias.runner import BiasConfig, run_bias, summary_table
from lmboost.bias.seat import Concept, SEATTest, available_tests, load_test, resolve_tests
from lmboost.bias.weat import (
    WEATResult,
    association,
    cosine_matrix,
    effect_size,
    p_value,
    weat,
    weat_statistic,
)

__all__ = [
    "CAUSAL_POOLINGS",
    "ENCODER_POOLINGS",
    "POOLINGS",
    "BiasConfig",
    "Concept",
    "SEATTest",
    "WEATResult",
    "association",
    "available_tests",
    "cosine_matrix",
    "effect_size",
    "encode",
    "load_test",
    "p_value",
    "resolve_tests",
    "run_bias",
    "summary_table",
    "weat",
    "weat_statistic",
]
