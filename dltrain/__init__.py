"""dltrain: a YAML file in, a trained PyTorch model out.

The Python API mirrors the command line: `dltrain.fit(config)`, `dltrain.check(config)`,
`dltrain.evaluate(run)`, `dltrain.predict(run, table)`, `dltrain.export(run)`, `dltrain.tune(config)`, and
`dltrain.load_run(run)` for the trained model itself. Importing dltrain does not import torch;
each function imports what it needs.
"""

from __future__ import annotations

__version__ = "0.1.0"

_API = {
    "fit": "dltrain.fitting",
    "check": "dltrain.fitting",
    "evaluate": "dltrain.inference",
    "predict": "dltrain.inference",
    "export": "dltrain.export",
    "tune": "dltrain.tools.tune",
    "load_run": "dltrain.checkpoint",
    "load_config": "dltrain.config",
}

__all__ = [*_API, "__version__"]


def __getattr__(name: str):
    if name in _API:
        from dltrain.memory import load

        return getattr(load(_API[name]), name)
    raise AttributeError(f"module 'dltrain' has no attribute {name!r}")
