"""Exceptions lmboost raises for bad input: each message says what is wrong and how to fix it.

Every one derives from :class:`LmboostError`, so ``except LmboostError`` catches all the errors
the user can fix (the command line prints their message without a traceback); anything else is
a bug. The hierarchy::

    LmboostError
    ├── ModelNotFoundError      a model spec names nothing that exists
    ├── ModelLoadError          a model exists but cannot be loaded
    │   ├── CacheError          a converted-model cache folder is damaged
    │   └── RemoteCodeError     a model needs its own code, not allowed
    ├── DependencyError         an optional package a feature needs is not installed
    ├── BackendError            a backend cannot start or serve a request
    ├── ScoringError            a scoring request cannot be served
    ├── GenerationError         a generation request or its settings are invalid
    ├── TaskError               a task is unknown, or its data is missing or malformed
    │   ├── DataNotFoundError   the data directory or a data file is missing
    │   └── FileEncodingError   a text file is not UTF-8
    ├── InputFileError          a prompts file or lm-evaluation-harness log is unusable
    ├── OutputFolderError       an output folder cannot be created, written or claimed
    ├── RunRecordError          a run folder's records do not fit this run, or are damaged
    ├── EvaluationError         a metric got empty, mismatched or out-of-range input
    ├── CalibrationError        a calibrator got bad input or was used before ``fit``
    ├── CompressionError        a model cannot be compressed as asked
    ├── BiasTestError           a bias test cannot encode its texts as asked
    ├── ConfigError             a setting (config field, flag, argument) is invalid
    │   ├── RecipeError         a training recipe is invalid
    │   ├── MixtureError        an instruction-tuning mixture is invalid
    │   └── ServeConfigError    a serve config is invalid
    └── RequestError            a request to the server cannot be answered as sent (HTTP 422)

The modules that raise them also re-export them under their old names (for example
``lmboost.calibration.CalibrationError`` and ``lmboost.serving.ServeConfigError``), so either
import works; new code imports them from here.

This module imports nothing, so that any part of lmboost can import it cheaply.
"""


class LmboostError(Exception):
    """Base class for errors caused by the user's input or environment (not by a bug)."""


# --------------------------------------------------------------------------- models


class ModelNotFoundError(LmboostError):
    """A model spec names no catalog alias, local path or reachable hub id."""


class ModelLoadError(LmboostError):
    """A model file exists but cannot be loaded (corrupt, unsupported, incomplete)."""


class CacheError(ModelLoadError):
    """A converted-model cache folder is damaged; ``lmboost models pull`` rebuilds it."""


class RemoteCodeError(ModelLoadError):
    """A model needs its own Python code, and the user has not allowed it."""


class DependencyError(LmboostError):
    """An optional package a feature needs is not installed (or pip failed): install it as told."""


# --------------------------------------------------------------- backends, scoring, generation


class BackendError(LmboostError):
    """A backend cannot be started or cannot serve a request: its package is not installed, or
    it does not support the model or the operation (raised by :mod:`lmboost.backends`)."""


class ScoringError(LmboostError):
    """A scoring request cannot be served (empty, too long for the context window, ...)."""


class GenerationError(LmboostError):
    """A generation request cannot be served: no prompts, a prompt too long or encoding to no
    tokens, no chat template for ``chat=True``, or bad decoding settings (raised by
    :mod:`lmboost.generation` and :mod:`lmboost.decoding`, e.g. RAIN's settings)."""


# --------------------------------------------------------------------------- tasks and data


class TaskError(LmboostError):
    """A task name is unknown, or its data is missing or malformed."""


class DataNotFoundError(TaskError):
    """The data directory or a data file is missing."""


class FileEncodingError(TaskError):
    """A text file the user gave is not UTF-8."""


class InputFileError(LmboostError):
    """A given prompts file or lm-evaluation-harness log is missing, malformed or empty."""


# --------------------------------------------------------------------------- run folders


class OutputFolderError(LmboostError):
    """An output folder is a file, cannot be written (permissions, full disk) or is locked."""


class RunRecordError(LmboostError):
    """A run folder holds records of another run (settings, prompts) or damaged/missing ones."""


# --------------------------------------------------------------- evaluation, calibration


class EvaluationError(LmboostError):
    """A metric's inputs are empty, of mismatched length, of the wrong type or out of range
    (raised by :mod:`lmboost.evaluation`)."""


class CalibrationError(LmboostError):
    """A calibrator got bad input (shape, NaN, label count, a bad hyper-parameter, checked in
    ``fit``), an unknown name or parameter in ``get_calibrator``, or was used before ``fit``
    (raised by :mod:`lmboost.calibration`); also a calibration method that the stored scores or
    an lm-evaluation-harness log cannot feed (:mod:`lmboost.icl`)."""


# --------------------------------------------------------------- compression, bias


class CompressionError(LmboostError):
    """A compression method or spec is unknown or malformed, or the model does not allow it."""


class BiasTestError(LmboostError):
    """A bias test's pooling is unknown or does not suit the model, or it has no texts."""


# --------------------------------------------------------------- settings and configuration files


class ConfigError(LmboostError):
    """A setting (config field, flag, argument) is unknown, out of range or contradictory."""


class RecipeError(ConfigError):
    """A training recipe names an unknown key, gives a value of the wrong type, or contradicts
    itself (raised by :mod:`lmboost.training` when a recipe or override is read)."""


class MixtureError(ConfigError):
    """An instruction-tuning mixture names an unknown source or group, or its settings
    contradict each other (raised by :mod:`lmboost.instruct`)."""


class ServeConfigError(ConfigError):
    """A serve config names an unknown key, gives a value of the wrong type or out of range, or
    a served task cannot be set up (raised by :mod:`lmboost.serving` at start-up)."""


# --------------------------------------------------------------------------- serving


class RequestError(LmboostError):
    """A request to ``lmboost serve`` cannot be answered as sent (missing or unknown input
    fields, too many or too long inputs, generation settings over the server's limits); its
    message says what to change and the server answers it with HTTP 422."""
