"""Does a sequence decode to the same tokens batched (`eval --parallel N`) as alone?

Compares two evaluation runs of the same settings, one decoded N problems side by side
(their passes merged into shared llama.cpp passes), one a problem at a time, on every
(mode, problem) both hold: the same tokens, the same answer, and accuracy each way.
Merged passes round differently, so near-ties may flip: whatever differs is noise
floor, like the differences between the two lossless modes.

    python scripts/batched_vs_alone.py --batched docs/eval/gsm8k-q4_0-w32-batched \
        --alone docs/eval/gsm8k-q4_0-w32 --out docs/eval/gsm8k-q4_0-w32-batched/vs-alone.md
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from autojudge.runfiles import read_records


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batched", required=True, type=Path)
    parser.add_argument("--alone", required=True, type=Path)
    parser.add_argument("--out", required=True, type=Path)
    args = parser.parse_args(argv)
    settings = [json.loads((d / "meta.json").read_text()) for d in (args.batched, args.alone)]
    if settings[0] != settings[1]:
        raise SystemExit("the two runs were decoded with other settings (meta.json differs)")
    # Judge modes pair only when the same judge decoded both.
    key = lambda r: (r["mode"], r["problem"], r.get("judge"))  # noqa: E731
    alone = {key(r): r for r in read_records(args.alone / "records.jsonl", repair=False)}
    pairs = [(r, alone[key(r)]) for r in read_records(args.batched / "records.jsonl", repair=False)
             if key(r) in alone and r.get("batched") and not alone[key(r)].get("batched")]
    if not pairs:
        raise SystemExit("the runs share no (mode, problem) decoded batched in one and alone in the other")
    lines = [f"{args.batched} (batched) against {args.alone} (alone), on the {len(pairs)} decodes both hold "
             f"({len({a['problem'] for a, _ in pairs})} problems):", "",
             "| mode | decodes | same tokens | same answer | correct batched | correct alone |",
             "|---|---|---|---|---|---|"]
    for mode in dict.fromkeys(a["mode"] for a, _ in pairs):
        these = [(a, b) for a, b in pairs if a["mode"] == mode]
        lines.append(f"| {mode} | {len(these)} | {sum(a['token_ids'] == b['token_ids'] for a, b in these)} | "
                     f"{sum(a['answer'] == b['answer'] for a, b in these)} | {sum(a['correct'] for a, _ in these)} | "
                     f"{sum(b['correct'] for _, b in these)} |")
    same = sum(a["token_ids"] == b["token_ids"] for a, b in pairs)
    answer = sum(a["answer"] == b["answer"] for a, b in pairs)
    lines.append(f"| all | {len(pairs)} | {same} ({same / len(pairs):.0%}) | {answer} ({answer / len(pairs):.0%}) | "
                 f"{sum(a['correct'] for a, _ in pairs)} | {sum(b['correct'] for _, b in pairs)} |")
    args.out.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
