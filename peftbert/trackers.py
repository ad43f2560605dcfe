"""Experiment trackers, through Accelerate's: tensorboard (default), wandb, mlflow, or none.

Every tracker writes inside the run directory and works offline unless the user says otherwise:
W&B runs in offline mode unless WANDB_MODE is set (then `wandb sync RUN/wandb/offline-run-*` uploads it),
MLflow writes to a local file store RUN/mlruns unless MLFLOW_TRACKING_URI is set (`mlflow ui
--backend-store-uri RUN/mlruns` shows it). Curves: train/loss, train/lr and eval/<metric> per step.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
from pathlib import Path

from .errors import UserError

TRACKERS = ("tensorboard", "wandb", "mlflow", "none")


def check_available(report_to: str) -> None:
    """Each tracker is the package of its name."""
    if report_to != "none" and importlib.util.find_spec(report_to) is None:
        raise UserError(f"--report-to {report_to} needs the {report_to} package: pip install {report_to} "
                        "(or choose --report-to none)")


def log_with(report_to: str, out_dir: Path | None) -> str | None:
    """Accelerate's `log_with`: nothing for a run without a directory (a warm-up, a probe)."""
    return None if out_dir is None or report_to == "none" else report_to


def init_kwargs(report_to: str, out_dir: Path) -> dict:
    """Per-tracker arguments that keep its files in the run directory and its traffic local."""
    if report_to == "wandb":
        return {"wandb": {"dir": str(out_dir), "name": out_dir.name, "mode": os.environ.get("WANDB_MODE", "offline")}}
    if report_to == "mlflow":
        if "MLFLOW_TRACKING_URI" not in os.environ:
            import mlflow

            # MLflow 3 keeps its file store (maintenance mode) behind this switch; a database store would
            # need SQLAlchemy, which mlflow-skinny does not bring. A user's own tracking URI skips both.
            os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
            mlflow.set_tracking_uri((out_dir / "mlruns").resolve().as_uri())
        return {"mlflow": {"run_name": out_dir.name}}
    return {}


@contextlib.contextmanager
def finished(acc):
    """Finish the run's trackers on the way out, errors included. Not acc.end_training(): it destroys the
    process group the caller still needs."""
    try:
        yield
    finally:
        for tracker in acc.trackers:
            tracker.finish()
