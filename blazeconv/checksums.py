"""Verify a ``SHA256SUMS`` file (``sha256sum`` format) without depending on the platform's tools.

Usage: ``python -m blazeconv.checksums SHA256SUMS`` (paths relative to the current directory).
"""

from __future__ import annotations

import sys
from pathlib import Path

from .io import sha256_of


def verify(sums_file: Path) -> list[str]:
    """Problems found, one line each (empty when every file matches)."""
    problems = []
    for number, line in enumerate(sums_file.read_text().splitlines(), 1):
        if not line.strip():
            continue
        digest, _, name = line.partition("  ")
        path = sums_file.parent / name.strip()
        if not path.is_file():
            problems.append(f"{path}: missing (listed on line {number} of {sums_file})")
        elif sha256_of(path) != digest.strip():
            problems.append(f"{path}: SHA-256 differs from {sums_file}")
    return problems


if __name__ == "__main__":
    problems = verify(Path(sys.argv[1]))
    for problem in problems:
        print(f"Error: {problem}", file=sys.stderr)
    sys.exit(1 if problems else 0)
