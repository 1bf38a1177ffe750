"""Rewrite README.md's option tables from the option declarations (src/voxseg/config/, `readme_tables`).

    .venv/bin/python scripts/update_readme_options.py

tests/test_options.py fails while the README and the declarations differ.
"""

from __future__ import annotations

import re
from pathlib import Path

from voxseg.config import readme_tables

README = Path(__file__).resolve().parents[1] / "README.md"


def block(command: str) -> re.Pattern[str]:
    start, end = rf"<!-- options {command}: generated.*?-->\n", rf"<!-- options {command}: end -->"
    return re.compile(f"({start})(.*?)({end})", re.S)


if __name__ == "__main__":
    text = README.read_text()
    for command, table in readme_tables().items():
        if not block(command).search(text):
            raise SystemExit(f"README.md has no <!-- options {command}: generated ... --> block")
        text = block(command).sub(lambda m, t=table: m.group(1) + t + m.group(3), text)
        print(f"README.md: `voxseg {command}` option table rewritten ({table.count(chr(10)) - 2} options)")
    README.write_text(text)
