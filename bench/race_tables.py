"""Rewrite README.md's race tables from the race.json each names (``<!-- race: PATH -->`` blocks).

    python bench/race_tables.py            # from the checkout's root; tests/test_race.py checks they agree
"""

from pathlib import Path

from genzoo.cli.race import readme_tables

root = Path(__file__).resolve().parents[1]
readme = root / "README.md"
text = readme.read_text()
new = readme_tables(text, root)
readme.write_text(new)
print("README.md: race tables " + ("rewritten" if new != text else "already agree"))
