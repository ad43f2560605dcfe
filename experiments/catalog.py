"""Reading experiment.yaml files: the fields every experiment has, checked once here.

Required: id (= its folder), title, status (current | superseded: superseded ones live in archive/), machine
("CPU: ..." or "GPU: ..."), commit, evidence_for, headline (one line for INDEX.md), commands (shell lines run
from the repository root, `{out}` standing for runs/<id>). Optional: tasks, methods, seeds; conclusion (at most
5 lines); notes; presets (method -> why its recipes/methods/<method>.yaml is what it is); collect (what `run`
copies into results/: `files` globs under {out}/`from`, into results/`to`, `rename: parent`); tables (what the
README shows: tables.KINDS); readme_rows (the rows it gives README.md's current-results table).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent
STATUSES = ("current", "superseded")
REQUIRED = ("id", "title", "status", "machine", "commit", "evidence_for", "headline", "commands")
OPTIONAL = ("tasks", "methods", "seeds", "conclusion", "presets", "collect", "tables", "readme_rows", "notes")


class ExperimentError(Exception):
    """A malformed experiment.yaml or an unknown id: shown as one `error:` line."""


@dataclass
class Experiment:
    id: str
    dir: Path
    title: str
    status: str
    machine: str
    commit: str
    evidence_for: str
    headline: str
    commands: list[str]
    tasks: list[str] = field(default_factory=list)
    methods: list[str] = field(default_factory=list)
    seeds: list[int] = field(default_factory=list)
    conclusion: str = ""
    presets: dict[str, str] = field(default_factory=dict)
    collect: list[dict] = field(default_factory=list)
    tables: list[dict] = field(default_factory=list)
    readme_rows: list[dict] = field(default_factory=list)
    notes: str = ""

    @property
    def results(self) -> Path:
        return self.dir / "results"

    def link(self, root: Path) -> str:
        """Its folder relative to the experiments root, as INDEX.md links it."""
        return self.dir.relative_to(root).as_posix()


def load(path: Path) -> Experiment:
    data = yaml.safe_load(path.read_text())
    where = f"{path}"
    if not isinstance(data, dict):
        raise ExperimentError(f"{where}: expected a mapping of fields, got {type(data).__name__}")
    missing = [k for k in REQUIRED if k not in data]
    unknown = sorted(set(data) - set(REQUIRED) - set(OPTIONAL))
    problems = [f"{what} {', '.join(keys)}" for what, keys in (("missing", missing), ("unknown", unknown)) if keys]
    if problems:
        raise ExperimentError(f"{where}: {'; '.join(problems)} (fields: {', '.join(REQUIRED + OPTIONAL)})")
    if data["id"] != path.parent.name:
        raise ExperimentError(f"{where}: id {data['id']!r} differs from its folder {path.parent.name!r}; "
                              "make them equal")
    if data["status"] not in STATUSES:
        raise ExperimentError(f"{where}: status must be one of {', '.join(STATUSES)}, got {data['status']!r}")
    if (data["status"] == "superseded") != (path.parent.parent.name == "archive"):
        raise ExperimentError(f"{where}: superseded experiments live in archive/ and current ones outside it")
    if not isinstance(data["commands"], list) or not all(isinstance(c, str) for c in data["commands"]):
        raise ExperimentError(f"{where}: commands must be a list of shell lines")
    if len(str(data.get("conclusion", "")).strip().splitlines()) > 5:
        raise ExperimentError(f"{where}: conclusion has more than 5 lines; shorten it")
    return Experiment(dir=path.parent, **data)


def all_experiments(root: Path = ROOT) -> list[Experiment]:
    """Every experiment under root, current ones first, each group in id order."""
    paths = sorted(root.glob("*/experiment.yaml")) + sorted(root.glob("archive/*/experiment.yaml"))
    return [load(p) for p in paths]


def find(exp_id: str, root: Path = ROOT) -> Experiment:
    for path in (root / exp_id / "experiment.yaml", root / "archive" / exp_id / "experiment.yaml"):
        if path.is_file():
            return load(path)
    known = ", ".join(e.id for e in all_experiments(root))
    raise ExperimentError(f"no experiment {exp_id!r}; known: {known}")
