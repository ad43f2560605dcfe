"""Write docs/bad-input.md's table: run every case of tests/test_bad_input.py and show its real message.

    .venv/bin/python tools/bad_input_table.py            # rewrites the table between the markers in docs/bad-input.md
    .venv/bin/python tools/bad_input_table.py --print    # prints it instead

The cases run as the tests run them (CliRunner, in a directory of bad inputs built by `make_inputs`, the Hub
unreachable: HF_HUB_OFFLINE=1). Exits 1, leaving the page as it was, if a case did not end in one `error:`
line with exit code 2 and nothing written.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PAGE = ROOT / "docs" / "bad-input.md"
BEGIN, END = "<!-- bad-input:begin -->", "<!-- bad-input:end -->"
DAMAGED = "<!-- damaged-artefacts:begin -->", "<!-- damaged-artefacts:end -->"
sys.path.insert(0, str(ROOT / "tests"))

# conftest, imported by the test module, sets HF_HUB_OFFLINE=1 (tests never touch the network)
from test_bad_input import CASES, make_inputs, run_case, skip_reason


def cell(text: str) -> str:
    return text.replace("|", "\\|")


def table() -> tuple[str, list[str]]:
    """The markdown table, and the commands that did not end in a clean one-line error."""
    bad = []
    with tempfile.TemporaryDirectory() as tmp:
        d = make_inputs(Path(tmp) / "inputs")
        rows = []
        for case in CASES:
            reason = skip_reason(case, d)
            if reason:
                message = f"(not run here: {reason}; expected: {' … '.join(case.expect)})"
            else:
                result, created = run_case(case, d)
                message = result.output.strip()
                if (result.exit_code != 2 or len(message.splitlines()) != 1 or not message.startswith("error: ")
                        or created or not all(n in message for n in case.expect)):
                    bad.append(case.command)
                message = message.replace(f"{d}/", "")  # paths as the command wrote them
                data = os.environ.get("PEFTBERT_DATA_DIR")
                if data:
                    message = message.replace(data, "$PEFTBERT_DATA_DIR")
            rows.append(f"| {cell(case.what)} | `peftbert {cell(case.command)}` | {cell(message)} |")
    return "\n".join(["| what is wrong | command | message |", "|---|---|---|", *rows]), bad


def damaged_table() -> str:
    """The damaged-artefact block: tests/test_fault_matrix.py's size and, per artefact kind and command that
    reads it, one file cut to half with the line the command printed."""
    from test_fault_matrix import DAMAGES, all_rows, build_artefacts, examples

    with tempfile.TemporaryDirectory() as tmp:
        env = build_artefacts(Path(tmp) / "artefacts")
        n, rows = len(all_rows(env)), examples(env, Path(tmp) / "work")
    return "\n".join([
        f"`tests/test_fault_matrix.py` generates {n} rows: every artefact kind x every file in it x {len(DAMAGES)} "
        f"damages ({', '.join(DAMAGES)}) x every command that reads it. One example per kind and command:", "",
        "| damaged file (cut to half) | command | message |", "|---|---|---|",
        *(f"| `{cell(what)}` | `peftbert {cell(command)} ...` | {cell(message)} |" for what, command, message in rows)])


def replace_block(page: str, block: str, begin: str = BEGIN, end: str = END) -> str:
    """The page with the text between the markers replaced (the markers and the prose around them kept)."""
    pattern = re.compile(re.escape(begin) + r".*?" + re.escape(end), re.S)
    if not pattern.search(page):
        sys.exit(f"error: {PAGE} has no {begin} ... {end} block; put the markers back where the table goes")
    return pattern.sub(lambda _: f"{begin}\n{block}\n{end}", page)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--print", action="store_true", help="print the table instead of writing the page")
    args = parser.parse_args()
    block, bad = table()
    damaged = damaged_table()
    if args.print:
        print(block, damaged, sep="\n\n")
    for c in bad:
        print(f"not a one-line error: peftbert {c}", file=sys.stderr)
    if bad:
        return 1
    if not args.print:
        PAGE.write_text(replace_block(replace_block(PAGE.read_text(), block), damaged, *DAMAGED))
        print(f"wrote {PAGE.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
