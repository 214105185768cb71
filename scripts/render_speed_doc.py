"""Fill docs/speed.md's tables from the committed benchmark files (run after `make bench`)."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

from autojudge.evaluation.costmodel import PassCosts, check_against_runs, costs_report, load_costs
from autojudge.evaluation.render import markdown_table
from autojudge.evaluation.report import write_report
from autojudge.runfiles import read_records

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "docs" / "bench"


def section(name: str, body: str) -> str:
    return f"<!-- {name} -->\n{body}\n<!-- /{name} -->"


def with_format_flags(records: list[dict]) -> list[dict]:
    """Older records hold token ids only: decode them to judge the answer format."""
    if all("follows_format" in r for r in records):
        return records
    from autojudge.models.loading import load_tokenizer
    from autojudge.models.registry import DEFAULT_TARGET
    from autojudge.tasks.gsm8k import follows_format
    tokenizer = load_tokenizer(DEFAULT_TARGET)
    return [r if "follows_format" in r else
            {**r, "follows_format": follows_format(tokenizer.decode(r["token_ids"], skip_special_tokens=True))}
            for r in records]


def main() -> int:
    doc = ROOT / "docs" / "speed.md"
    text = doc.read_text()
    costs = {}
    for backend in ("torch", "llamacpp"):
        data = json.loads((BENCH / f"costs-{backend}.json").read_text())
        draft = PassCosts(data["pair"]["draft"], {int(k): v for k, v in data["draft"].items()})
        target = PassCosts(data["pair"]["target"], {int(k): v for k, v in data["target"].items()})
        costs[backend] = (draft, target)
    tables = "\n\n".join(f"**{b}**\n\n" + costs_report(*costs[b]).split("\n\n| window")[0] for b in costs)
    ceilings = "\n\n".join(f"**{b}**\n\n| window" + costs_report(*costs[b]).split("\n\n| window")[1] for b in costs)
    summary = json.loads((BENCH / "cpu" / "summary.json").read_text())
    methods, meta = summary["meta"]["methods"], summary["meta"]
    records = with_format_flags(read_records(BENCH / "cpu" / "records.jsonl"))
    # The benchmark's report again, from its records (the report's format may have moved on).
    rows = write_report(records, methods, BENCH / "cpu", title="gsm8k eval, CPU", meta=meta)
    bench_table = markdown_table(rows)
    per_backend = {backend: load_costs(BENCH / f"costs-{backend}.json") for backend in ("torch", "llamacpp")}
    draft, target = meta["runtimes"]["torch"]["draft"], meta["runtimes"]["torch"]["target"]
    by_problem = {}
    for r in records:
        by_problem.setdefault(r["problem"], set()).add(r["mode"])
    complete = {p for p, seen in by_problem.items() if set(methods) <= seen}
    check = check_against_runs([r for r in records if r["problem"] in complete and r["mode"] in methods],
                               per_backend, draft, target)
    for name, body in (("COSTS_TABLES", tables), ("CEILING_TABLES", ceilings),
                       ("BENCH_TABLE", bench_table), ("CHECK_TABLE", check)):
        block = section(name, body)
        pattern = re.compile(rf"<!-- {name} -->.*?<!-- /{name} -->", re.S)
        text = pattern.sub(lambda _: block, text) if pattern.search(text) else text.replace(name, block)
    doc.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
