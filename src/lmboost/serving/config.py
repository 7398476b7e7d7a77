"""What ``lmboost serve`` serves: a :class:`ServeConfig` (the model, limits, where state is kept)
holding one :class:`ServedTask` per classification task, read from YAML or built by the CLI.

A config file (every key but ``tasks`` optional)::

    model: smollm2-135m-instruct
    dtype: auto              # float32 on CPUs, bfloat16 on CUDA
    state_dir: serve-state   # calibrator state, saved atomically
    tasks:
      - task: sst2           # a registered task, or a task file (.yaml) relative to this file
        shots: 4
        calibrator: bc       # none, bc, cc, dc or bcl
        warm_start: 32       # unlabelled pool inputs scored at start-up (bc, bcl)
      - task: my-task.yaml
        name: reviews        # the name requests use (default: the task's own)
        calibrator: bcl
        labelled: 32         # labelled pool examples BCL's strength is fitted on
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lmboost.backends import BACKENDS
from lmboost.config import from_dict, merge, read_yaml
from lmboost.errors import ServeConfigError
from lmboost.models import DEFAULT_MODEL
from lmboost.models.loading import DTYPE_CHOICES

#: Calibrators a server applies online: BC's estimate follows the traffic, the others are
#: fitted once at start-up.
ONLINE_CALIBRATORS = ("none", "bc", "cc", "dc", "bcl")


@dataclass(kw_only=True)
class ServedTask:
    """One classification task a server answers.

    Attributes:
        task: registry name or path to a task file (.yaml; relative to the config file).
        name: the name requests use (default: the task's registry name or file stem).
        shots: demonstrations in the prompt, drawn once from the task's pool with ``seed``.
        seed: draws the demonstrations (and the warm-start and labelled examples).
        calibrator: none, bc (running estimate updated by the traffic), cc, dc (fitted at
            start-up on content-free inputs / in-domain random strings) or bcl (BC with a strength
            fitted at start-up on ``labelled`` examples, applied to the running estimate).
        min_examples: bc and bcl answer with calibrated probabilities once the running estimate
            has seen this many inputs (warm-start ones included); before that, the label comes
            from the uncalibrated probabilities and the answer says so.
        warm_start: unlabelled pool inputs (never demonstrations) scored at start-up to begin
            the estimate, so that the first requests are calibrated.
        labelled: labelled pool examples BCL's strength is fitted on.
        momentum: None for BC's cumulative mean, or in [0, 1) for an exponential moving
            average that follows a drifting input distribution.
    """

    task: str
    name: str = ""
    shots: int = 4
    seed: int = 0
    calibrator: str = "bc"
    min_examples: int = 8
    warm_start: int = 0
    labelled: int = 32
    momentum: float | None = None

    def __post_init__(self) -> None:
        if not self.name:
            path = Path(self.task)
            self.name = path.stem if path.suffix in (".yaml", ".yml") else self.task

    def validate(self) -> None:
        """Raise ServeConfigError naming the first bad setting and its fix."""
        where = f"task {self.name!r}"
        if self.calibrator not in ONLINE_CALIBRATORS:
            raise ServeConfigError(
                f"{where}: calibrator {self.calibrator!r} is not served online; use one of "
                f"{', '.join(ONLINE_CALIBRATORS)} (the others need labels or features per input: "
                "run them offline with `lmboost icl`)."
            )
        for key in ("shots", "seed", "min_examples", "warm_start", "labelled"):
            if getattr(self, key) < 0:
                raise ServeConfigError(f"{where}: {key} must be >= 0, not {getattr(self, key)}.")
        if self.calibrator == "bcl" and self.labelled < 2:
            raise ServeConfigError(f"{where}: bcl needs labelled >= 2 to fit its strength.")
        if self.momentum is not None and not 0.0 <= self.momentum < 1.0:
            raise ServeConfigError(f"{where}: momentum must be empty or in [0, 1).")


@dataclass(kw_only=True)
class ServeConfig:
    """A server: one model, the tasks it classifies, its limits and where its state lives.

    Attributes:
        model, backend, dtype, device: as in ``lmboost icl``.
        tasks: the classification tasks served (requests can name no other).
        host, port: where to listen; 127.0.0.1 unless told otherwise.
        api_key_env: name of an environment variable holding a bearer token every request but
            ``/health`` and ``/`` must send; empty = no authentication.
        state_dir: folder of each task's calibrator state (saved atomically).
        save_every: save a task's state after this many new inputs (and on shutdown).
        batch_wait_ms: how long a request waits for others of its task to share its batch.
        max_batch: most inputs scored in one batch.
        max_body_bytes, max_inputs, max_input_chars: request limits (413 / 422 beyond).
        max_new_tokens: the longest continuation ``/v1/generate`` produces.
        max_samples: most samples (sampling, self-consistency) per generate request.
        max_rain_iterations: most RAIN searches per step a request may ask for.
        chat: chat template for generation: auto, on or off.
        trust_remote_code: allow the model folder's own Python code (off).
    """

    tasks: list[ServedTask] = field(default_factory=list)
    model: str = DEFAULT_MODEL
    backend: str = "hf"
    dtype: str = "auto"
    device: str = "auto"
    host: str = "127.0.0.1"
    port: int = 8000
    api_key_env: str = ""
    state_dir: Path = Path("serve-state")
    save_every: int = 100
    batch_wait_ms: float = 5.0
    max_batch: int = 64
    max_body_bytes: int = 1_000_000
    max_inputs: int = 64
    max_input_chars: int = 4_000
    max_new_tokens: int = 256
    max_samples: int = 16
    max_rain_iterations: int = 20
    chat: str = "auto"
    trust_remote_code: bool = False

    def validate(self) -> None:
        """Raise ServeConfigError naming the first bad setting and its fix."""
        if not self.tasks:
            raise ServeConfigError(
                "No tasks to serve: give --task NAME or list them under `tasks:` in the config."
            )
        for task in self.tasks:
            task.validate()
        names = [t.name for t in self.tasks]
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise ServeConfigError(f"Task name(s) {twice} served twice: give each a `name:`.")
        if self.backend not in BACKENDS:
            raise ServeConfigError(f"backend must be one of {', '.join(BACKENDS)}.")
        if self.dtype not in DTYPE_CHOICES:
            raise ServeConfigError(f"dtype must be one of {', '.join(DTYPE_CHOICES)}.")
        if self.chat not in ("auto", "on", "off"):
            raise ServeConfigError("chat must be auto, on or off.")
        if not 0 < self.port < 65536:
            raise ServeConfigError(f"port must be in 1..65535, not {self.port}.")
        for key in ("save_every", "max_batch", "max_body_bytes", "max_inputs",
                    "max_input_chars", "max_new_tokens", "max_samples", "max_rain_iterations"):
            if getattr(self, key) < 1:
                raise ServeConfigError(f"{key} must be >= 1, not {getattr(self, key)}.")
        if self.batch_wait_ms < 0:
            raise ServeConfigError("batch_wait_ms must be >= 0.")


def load_serve_config(path: str | Path, **overrides: Any) -> ServeConfig:
    """A :class:`ServeConfig` from a YAML file (task file paths relative to it), with
    ``overrides`` (non-None CLI values) on top; validated."""
    path = Path(path)
    data = read_yaml(path, what="Serve config", error=ServeConfigError)
    tasks = data.get("tasks")
    if not isinstance(tasks, list) or not tasks:
        raise ServeConfigError(f"{path}: `tasks:` must list at least one task.")
    data["tasks"] = [{"task": entry} if isinstance(entry, str) else entry for entry in tasks]
    given = {k: v for k, v in overrides.items() if v is not None}
    config = from_dict(ServeConfig, merge(data, given), source=str(path), error=ServeConfigError)
    for task in config.tasks:
        candidate = path.parent / task.task
        if task.task.endswith((".yaml", ".yml")) and candidate.is_file():
            task.task = str(candidate)
    if "state_dir" in data and "state_dir" not in given and not config.state_dir.is_absolute():
        config.state_dir = path.parent / config.state_dir
    try:
        config.validate()
    except ServeConfigError as err:
        raise ServeConfigError(f"{path}: {err}") from None
    return config
