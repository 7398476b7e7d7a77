"""lmboost: get more out of small and frozen language models."""

__version__ = "0.1.0"
