"""Exceptions lmboost raises for bad input: each message says what is wrong and how to fix it."""


class LmboostError(Exception):
    """Base class for errors caused by the user's input or environment (not by a bug)."""


class ModelNotFoundError(LmboostError):
    """A model spec names no catalog alias, local path or reachable hub id."""


class ModelLoadError(LmboostError):
    """A model file exists but cannot be loaded (corrupt, unsupported, incomplete)."""


class ScoringError(LmboostError):
    """A scoring request cannot be served (empty, too long for the context window, ...)."""


class TaskError(LmboostError):
    """A task name is unknown, or its data is missing or malformed."""


class DataNotFoundError(TaskError):
    """The data directory or a data file is missing."""


class CacheError(ModelLoadError):
    """A converted-model cache folder is damaged; ``lmboost models pull`` rebuilds it."""


class RemoteCodeError(ModelLoadError):
    """A model needs its own Python code, and the user has not allowed it."""


class FileEncodingError(TaskError):
    """A text file the user gave is not UTF-8."""
