"""The README stays a front door: short, a true map of the package, every docs page linked once, no dead links.

Each check is a function of the text it reads, so the tests below can also feed it broken text and see it fail.
"""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
DOCS = ROOT / "docs"
PACKAGE = ROOT / "peftbert"
MAX_README_LINES = 250

LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")  # inline markdown links: [text](target)
# Blocks a script writes from result files or real runs (<!-- NAME:begin --> ... <!-- NAME:end -->: the results
# table, the bad-input and damaged-artefact tables); the prose around them is typed by hand.
GENERATED = re.compile(r"<!-- ([\w-]+):begin -->.*?<!-- \1:end -->", re.S)
# What a typed-in measurement looks like: a score with 3+ decimals, a fractional percentage, "± 0.01".
MEASUREMENT = re.compile(r"(?<![\w.])\d\.\d{3,}(?![\w.])|(?<![\w.])\d+\.\d+%|±\s*\d")


def modules() -> list[Path]:
    """Every module of the package, as a path relative to peftbert/ (package __init__ files aside)."""
    return sorted(p.relative_to(PACKAGE) for p in PACKAGE.rglob("*.py") if p.name != "__init__.py")


def section(text: str, title: str) -> str:
    """The body of a `## title` section, up to the next second-level heading."""
    match = re.search(rf"^## {re.escape(title)}\s*$(.*?)(?=^## |\Z)", text, re.S | re.M)
    assert match, f"README has no '## {title}' section"
    return match.group(1)


def unnamed_modules(architecture: str, paths: list[Path]) -> list[str]:
    """Modules whose file name (and, for a subpackage, its folder) the architecture map does not name."""
    missing = []
    for path in paths:
        names = [path.name, *(f"{folder}/" for folder in path.parts[:-1])]
        if not all(re.search(rf"(?<![\w.]){re.escape(n)}(?![\w])", architecture) for n in names):
            missing.append(str(path))
    return missing


def named_files_missing(architecture: str, root: Path) -> list[str]:
    """File names the architecture map mentions (`name.py`) that no folder of the repository holds."""
    here = {p.name for folder in ("peftbert", "tools", "tests", "benchmarks", "experiments")
            for p in (root / folder).rglob("*.py")}
    return sorted({n for n in re.findall(r"[\w.]+\.py\b", architecture) if n not in here})


# Paths the docs name on purpose although the repository has no such file: the README's example of a new method,
# and where a wheel carries recipes/.
NOT_IN_REPO = {"peftbert/methods/vera.py", "recipes/methods/vera.yaml", "peftbert/recipes"}
REPO_PATH = re.compile(r"`((?:peftbert|benchmarks|tests|tools|recipes|experiments|docs)/[^`\s<>*{}]*)`")


def missing_paths(text: str, root: Path) -> list[str]:
    """Repository paths in `code spans` (no placeholders) that do not exist: a file moved, the docs did not."""
    named = (m.rstrip(".,:;") for m in REPO_PATH.findall(text))
    return [p for p in named if p not in NOT_IN_REPO and not (root / p).exists()]


def links(text: str) -> list[str]:
    """Link targets that point inside the repository (no web addresses, no in-page anchors)."""
    found = (m.group(1) for m in LINK.finditer(text))
    return [t for t in found if not re.match(r"[a-z][a-z0-9+.-]*:|#", t)]


def dead_links(page: Path, text: str) -> list[str]:
    return [t for t in links(text) if not (page.parent / t.split("#")[0]).exists()]


def docs_link_counts(readme: str, pages: list[Path]) -> dict[str, int]:
    """How many times the README links each docs page (anchors into a page count as links to it)."""
    targets = Counter((ROOT / t.split("#")[0]).resolve() for t in links(readme))
    return {p.name: targets[p.resolve()] for p in pages}


def typed_measurements(text: str) -> list[str]:
    return MEASUREMENT.findall(GENERATED.sub("", text))


def doc_pages() -> list[Path]:
    return sorted(DOCS.glob("*.md"))


# ---- the checks on the committed files


def test_readme_is_short():
    n = len(README.read_text().splitlines())
    assert n <= MAX_README_LINES, f"README.md has {n} lines (at most {MAX_README_LINES}): move detail to docs/"


def test_architecture_map_names_every_module():
    missing = unnamed_modules(section(README.read_text(), "Architecture"), modules())
    assert not missing, f"README's Architecture section does not name: {missing}"


def test_architecture_map_names_only_files_that_exist():
    missing = named_files_missing(section(README.read_text(), "Architecture"), ROOT)
    assert not missing, f"README's Architecture section names files that do not exist: {missing}"


def test_every_docs_page_is_linked_once_from_the_readme():
    pages = doc_pages()
    assert pages, "docs/ has no pages"
    wrong = {name: n for name, n in docs_link_counts(README.read_text(), pages).items() if n != 1}
    assert not wrong, f"docs pages the README links other than exactly once (page: times): {wrong}"


def test_links_point_at_files_that_exist():
    dead = {str(p.relative_to(ROOT)): d for p in [README, *doc_pages()] if (d := dead_links(p, p.read_text()))}
    assert not dead, f"links to paths that do not exist: {dead}"


def test_paths_named_in_code_spans_exist():
    missing = {str(p.relative_to(ROOT)): m for p in [README, *doc_pages()] if (m := missing_paths(p.read_text(), ROOT))}
    assert not missing, f"paths named in the docs that do not exist: {missing}"


def test_no_typed_in_measurements():
    """Numbers measured by a run live in generated blocks or experiments/, not in hand-written prose."""
    typed = {str(p.relative_to(ROOT)): t for p in [README, *doc_pages()] if (t := typed_measurements(p.read_text()))}
    assert not typed, f"hand-typed measurements (link the experiment that generates them instead): {typed}"


# ---- each check fails on input that breaks it


def test_checks_catch_broken_input(tmp_path):
    readme = README.read_text()
    assert len((readme + "x\n" * MAX_README_LINES).splitlines()) > MAX_README_LINES

    architecture = section(readme, "Architecture")
    assert unnamed_modules(architecture, [Path("newmodule.py"), Path("data/newreader.py")]) == [
        "newmodule.py", "data/newreader.py"]
    assert unnamed_modules("onnx_export.py", [Path("export.py")]) == ["export.py"]  # no substring matches
    assert unnamed_modules("methods/ ... lora.py", [Path("data/lora.py")]) == ["data/lora.py"]
    assert named_files_missing(architecture + "\n  gone.py  a module since removed", ROOT) == ["gone.py"]

    pages = doc_pages()
    counts = docs_link_counts(readme + f"\nsee [again]({pages[0].relative_to(ROOT)})\n", pages)
    assert counts[pages[0].name] == 2
    assert docs_link_counts(readme, [*pages, DOCS / "unlinked.md"])["unlinked.md"] == 0

    assert dead_links(README, "[gone](docs/no-such-page.md) [web](https://x.org) [here](#use)") == [
        "docs/no-such-page.md"]

    assert missing_paths("`benchmarks/gone.py` `recipes/methods/<method>.yaml` `peftbert/train.py`", ROOT) == [
        "benchmarks/gone.py"]

    assert typed_measurements("test macro-F1 0.8335, 2.3% faster, 0.80 ± 0.01") == ["0.8335", "2.3%", "± 0"]
    assert typed_measurements("<!-- results:begin -->\n| 0.8335 |\n<!-- results:end -->\nr 16, 15% masking") == []
