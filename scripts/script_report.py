"""How every report script ends: the Markdown report printed, and written to --out if given."""

from __future__ import annotations

from pathlib import Path


def publish(lines: list[str], out: str | Path | None) -> int:
    """Print the report's lines, write them to `out` when one is given; the exit status."""
    report = "\n".join(lines)
    print(report)
    if out:
        Path(out).write_text(report + "\n")
    return 0
