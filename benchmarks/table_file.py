"""Where a benchmark script's markdown table goes: the path given as its first argument, else its default."""

import sys
from pathlib import Path


def save_table(lines: list[str], default: str) -> None:
    out = Path(sys.argv[1] if len(sys.argv) > 1 else default)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
