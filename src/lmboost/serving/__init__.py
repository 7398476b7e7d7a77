"""``lmboost serve``: calibrated few-shot classification and aligned generation over HTTP.

:func:`build_app` loads the model once, prepares every task of a :class:`ServeConfig` (prompt
prefix pinned in the backend's cache, calibrator fitted or restored) and returns the FastAPI app;
:func:`serve` runs it with uvicorn. See docs/serving.md.
"""

from __future__ import annotations

import errno
import logging
import os

from lmboost.serving.config import (
    ONLINE_CALIBRATORS,
    ServeConfig,
    ServeConfigError,
    ServedTask,
    load_serve_config,
)

log = logging.getLogger("lmboost.serve")


def build_app(config: ServeConfig, backend=None):
    """The app for ``config``; ``backend`` (a loaded :class:`~lmboost.backends.Backend`) is
    loaded from ``config.model`` when not given."""
    from lmboost.backends import load_backend
    from lmboost.serving.app import create_app
    from lmboost.serving.engine import TaskEngine

    config.validate()
    if config.api_key_env and not os.environ.get(config.api_key_env):
        raise ServeConfigError(
            f"api_key_env names {config.api_key_env}, which is unset or empty: export "
            f"{config.api_key_env}=<a secret token>, or drop api_key_env to serve without one."
        )
    from lmboost.tasks import get_task

    for spec in config.tasks:  # an unknown task or a bad task file: said before the model loads
        get_task(spec.task)
    try:
        config.state_dir.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        reason = "a part of it is a file" if err.errno in (errno.EEXIST, errno.ENOTDIR) else (
            err.strerror
        )
        raise ServeConfigError(
            f"Cannot create the state folder {config.state_dir}: {reason}. Give another "
            "--state-dir (state_dir: in the config)."
        ) from None
    if not os.access(config.state_dir, os.W_OK | os.X_OK):
        raise ServeConfigError(f"The state folder {config.state_dir} is not writable.")
    if backend is None:
        backend = load_backend(
            config.model, config.backend, dtype=config.dtype, device=config.device,
            trust_remote_code=config.trust_remote_code, batch_size=config.max_batch,
        )
    engines = []
    for spec in config.tasks:
        engines.append(TaskEngine(spec, backend, config.state_dir / f"{spec.name}.json",
                                  config.save_every))
        log.info("task %s ready (%s)", spec.name, engines[-1].state())
    return create_app(config, backend, engines)


def serve(config: ServeConfig, backend=None) -> None:
    """Build the app and serve it until SIGINT/SIGTERM (calibrator state saved on the way out)."""
    import uvicorn

    app = build_app(config, backend)
    uvicorn.run(app, host=config.host, port=config.port, log_level="info")


__all__ = [
    "ONLINE_CALIBRATORS",
    "ServeConfig",
    "ServeConfigError",
    "ServedTask",
    "build_app",
    "load_serve_config",
    "serve",
]
