"""Print the README's "Bad input" table: run every case of tests/test_bad_input.py and show its real message.

    .venv/bin/python tools/bad_input_table.py

The cases run as the tests run them (CliRunner, in a directory of bad inputs built by `make_inputs`, the Hub
unreachable: HF_HUB_OFFLINE=1). Exits 1, after the table, if a case did not end in one `error:` line with
exit code 2 and nothing written.
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

# conftest, imported by the test module, sets HF_HUB_OFFLINE=1 (tests never touch the network)
from test_bad_input import CASES, make_inputs, run_case, skip_reason


def cell(text: str) -> str:
    return text.replace("|", "\\|")


def main() -> int:
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
    print("| what is wrong | command | message |")
    print("|---|---|---|")
    print("\n".join(rows))
    for c in bad:
        print(f"not a one-line error: peftbert {c}", file=sys.stderr)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
