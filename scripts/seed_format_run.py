"""Start the format run from the benchmark's llama.cpp target-only answers (same outputs).

The 10 answers `autojudge bench` already produced are copied, with their text, into the
format run's records so `autojudge bench --n 50 --methods llamacpp/target` does the rest.
"""

from __future__ import annotations

import sys
from pathlib import Path

from autojudge.models.loading import load_tokenizer
from autojudge.models.registry import DEFAULT_TARGET
from autojudge.runfiles import append_record, read_records
from autojudge.tasks.gsm8k import follows_format


def main(bench_dir: str, out_dir: str) -> int:
    tokenizer = load_tokenizer(DEFAULT_TARGET)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    done = {(r["mode"], r["problem"]) for r in read_records(out / "records.jsonl")}
    for record in read_records(Path(bench_dir) / "records.jsonl"):
        if record["mode"] != "llamacpp/target" or (record["mode"], record["problem"]) in done:
            continue
        text = tokenizer.decode(record["token_ids"], skip_special_tokens=True)
        append_record(out / "records.jsonl", {**record, "text": text, "follows_format": follows_format(text)})
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))
