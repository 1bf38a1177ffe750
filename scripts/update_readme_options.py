"""Rewrite README.md's option table from the option declarations (src/voxseg/config.py).

    .venv/bin/python scripts/update_readme_options.py

tests/test_options.py fails while the README and the declarations differ.
"""

from __future__ import annotations

import re
from pathlib import Path

from voxseg.config import COMMAND_OPTIONS, TrainConfig
from voxseg.options import markdown_table

README = Path(__file__).resolve().parents[1] / "README.md"
BLOCK = re.compile(r"(<!-- options: generated.*?-->\n)(.*?)(<!-- options: end -->)", re.S)

if __name__ == "__main__":
    text = README.read_text()
    if not BLOCK.search(text):
        raise SystemExit("README.md has no <!-- options: generated ... --> block")
    table = markdown_table(TrainConfig, COMMAND_OPTIONS)
    README.write_text(BLOCK.sub(lambda m: m.group(1) + table + m.group(3), text))
    print(f"README.md: option table rewritten ({table.count(chr(10)) - 2} options)")
