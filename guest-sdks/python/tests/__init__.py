"""Unit tests of sagahost_partner, run under plain CPython: `python3 -m unittest` here.

Puts `src/` first on the path so the tests run against this checkout's SDK
without installing it (an installed copy would otherwise be tested instead).
"""

import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent / "src"))
