"""Several sequences on one llama.cpp model, their passes merged: decoding, mining and
evaluation side by side, on the real default GGUF files."""

from __future__ import annotations

import pytest
import torch

pytest.importorskip("llama_cpp")

from autojudge.decoding.modes import DecodingOptions  # noqa: E402
from autojudge.models.loading import load_model, load_pair  # noqa: E402
from autojudge.models.runtime import RuntimeOptions  # noqa: E402
from autojudge.tasks.gsm8k import GSM8K  # noqa: E402
from tests.test_llamacpp import DRAFT, LLAMACPP  # noqa: E402

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def draft_llama():
    return load_model(DRAFT, LLAMACPP)


def test_with_uniform_passes_a_sequence_decodes_alike_alone_and_merged_with_others():
    """Each sequence has a KV stream of its own: merged into passes with other sequences
    (of other lengths), its logits are those it gets alone, to the bit (Q4_0)."""
    import threading

    from autojudge.models.batching import PassGate

    alone = load_model(DRAFT + "-q4_0", RuntimeOptions(backend="llamacpp", uniform_passes=True))
    prompts = [[9707, 11, 1246, 525, 498, 30, 358, 1079][: 5 + i] for i in range(3)]
    follow = [[6915, 13, 3555, 374, 220, 16, 22, 353][i:] for i in range(3)]

    def decode(model, i):
        model.reset()
        model.forward(prompts[i])
        return torch.cat([model.forward([t]).logits for t in follow[i]])

    reference = [decode(alone, i) for i in range(3)]
    gate = PassGate()
    sequences = alone.parallel(3, gate)
    merged: list = [None] * 3

    def run(i):
        with gate.member():
            merged[i] = decode(sequences[i], i)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for i in range(3):
        assert torch.equal(merged[i], reference[i])
    # A spare stream per sequence, for a model checker's sequence.
    assert sequences[0].another_sequence().cached_length == 0


def _side_by_side(jobs: list) -> list:
    """Run each job in its own thread; their results (or errors), in order."""
    import threading
    results: list = [None] * len(jobs)

    def run(i):
        try:
            results[i] = jobs[i]()
        except Exception as exc:  # noqa: BLE001 - handed to the test
            results[i] = exc

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(jobs))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results


def test_parallel_sequences_share_passes_and_keep_their_own_cache(draft_llama):
    import threading

    from autojudge.models.batching import PassGate

    texts = [[9707, 11, 1246, 525, 498, 30, 358, 1079, 6915, 13], [40, 1079, 264, 3460, 14, 1207, 34, 2082, 13]]
    alone = []
    for tokens in texts:  # each sequence alone, in the same two passes
        draft_llama.reset()
        first, second = draft_llama.forward(tokens[:-3]), draft_llama.forward(tokens[-3:])
        alone.append((torch.cat([first.logits, second.logits]), torch.cat([first.hidden, second.hidden])))

    gate = PassGate(patience=10.0)  # wait for the other thread however slow the machine
    models = draft_llama.parallel(2, gate)
    ready = threading.Barrier(2)

    def job(model, tokens):
        def run():
            with gate.member():
                ready.wait()
                first, second = model.forward(tokens[:-3]), model.forward(tokens[-3:])
                return torch.cat([first.logits, second.logits]), torch.cat([first.hidden, second.hidden])
        return run

    together = _side_by_side([job(m, t) for m, t in zip(models, texts)])
    assert (gate.requests, gate.passes) == (4, 2)  # both threads' passes were merged
    for (logits, hidden), (solo_logits, solo_hidden), model, tokens in zip(together, alone, models, texts):
        assert model.tokens == tokens
        # Other pass shapes, so not bit-equal (see the first test); but the same text.
        assert torch.equal(logits.argmax(-1), solo_logits.argmax(-1))
        assert torch.nn.functional.cosine_similarity(hidden, solo_hidden, dim=-1).min() > 0.999

    # One thread's bad pass fails that thread alone; the other's tokens are decoded.
    models[0].truncate(5)
    results = _side_by_side([job(models[0], texts[0][5:]),
                             job(models[1], [draft_llama.vocab_size + 7] + [13] * 4)])
    assert isinstance(results[1], RuntimeError) and "llama_decode" in str(results[1])
    assert models[1].tokens == texts[1]  # nothing of the failed pass is kept
    assert models[0].tokens == texts[0]
    assert torch.equal(results[0][0].argmax(-1), alone[0][0][5:].argmax(-1))


def test_mining_problems_side_by_side_stores_each_once_with_the_same_labels(tmp_path):
    import json

    from autojudge.mining.options import MiningOptions
    from autojudge.mining.run import mine
    from tests.toy_task import ToyTask

    pair = load_pair(runtime=LLAMACPP)
    one = mine(pair, ToyTask(), "all", str(tmp_path / "one"), MiningOptions(max_new_tokens=16, window=0), limit=3)
    side = mine(pair, ToyTask(), "all", str(tmp_path / "side"), MiningOptions(max_new_tokens=16, window=0), limit=3,
                parallel=3)
    lines = (tmp_path / "side" / "problems.jsonl").read_text().splitlines()
    assert sorted(json.loads(line)["problem_id"] for line in lines) == [0, 1, 2]
    for record in side.records:
        if record["mismatches"]:
            features = side.load_features(record["problem_id"])
            assert features["draft"].shape[0] == features["target"].shape[0] == len(record["mismatches"])

    def labels(store):
        return {r["problem_id"]: [(m["position"], m["draft_token"], m["important"]) for m in r["mismatches"]]
                for r in store.records}
    # Merged passes have other shapes, so a near-tie may flip (see the tests above);
    # a bug in the merging would garble every problem.
    same = [labels(side)[i] == labels(one)[i] for i in range(3)]
    assert sum(same) >= 2 and sum(len(v) for v in labels(side).values()) > 0


def test_an_evaluation_resumes_with_another_thread_count(tmp_path):
    """Thread counts follow the machine (or taskset); an eval run spans machines."""
    from dataclasses import replace

    from autojudge.evaluation.run import run_eval
    from autojudge.models.llamacpp import LlamaCppLM
    from autojudge.runfiles import read_records

    pair = load_pair(None, runtime=LLAMACPP)
    # One more thread than this machine (or taskset) gives: another machine.
    other = replace(pair, target=LlamaCppLM(pair.target.gguf_file, name=pair.target.name,
                                            n_threads=pair.target.n_threads + 1))
    assert pair.describe() != other.describe()
    run_eval(pair, GSM8K(), "eval", ["target"], tmp_path, DecodingOptions(window=16, max_new_tokens=4), limit=1)
    rows = run_eval(other, GSM8K(), "eval", ["target"], tmp_path, DecodingOptions(window=16, max_new_tokens=4),
                    limit=2)
    records = read_records(tmp_path / "records.jsonl")
    assert [r["problem"] for r in records] == [p.id for p in GSM8K().load("eval")[:2]]
    assert rows[0].problems == 2 and len(rows[0].runs.split(", ")) == 2


def test_an_evaluation_decodes_problems_side_by_side_and_keeps_them_out_of_tokens_per_second(tmp_path):
    from autojudge.evaluation.run import run_eval
    from autojudge.runfiles import read_records
    from tests.toy_task import ToyTask

    pair = load_pair(runtime=LLAMACPP)
    modes = ["target", "exact", "topk:4"]
    rows = run_eval(pair, ToyTask(), "all", modes, tmp_path / "side", DecodingOptions(window=4, max_new_tokens=12),
                    limit=3,
                    parallel=3)
    records = read_records(tmp_path / "side" / "records.jsonl")
    assert sorted((r["problem"], r["mode"]) for r in records) == sorted((p, m) for p in range(3) for m in modes)
    assert all(r["batched"] == 3 for r in records)
    assert all(row.problems == 3 and row.tokens_per_second is None and row.against_exact.speed is None
               for row in rows)
    run_eval(pair, ToyTask(), "all", modes, tmp_path / "alone", DecodingOptions(window=4, max_new_tokens=12), limit=3)
    alone = {(r["problem"], r["mode"]): r["token_ids"] for r in read_records(tmp_path / "alone" / "records.jsonl")}
    # Merged passes round differently (near-ties may flip); a bug in the merging would garble them all.
    same = sum(r["token_ids"] == alone[r["problem"], r["mode"]] for r in records)
    assert same >= len(records) // 2
    # One more mode, batched: nothing is timed, so only that mode is decoded (no baselines again).
    run_eval(pair, ToyTask(), "all", [*modes, "topk:2"], tmp_path / "side",
             DecodingOptions(window=4, max_new_tokens=12), limit=3, parallel=3)
    added = read_records(tmp_path / "side" / "records.jsonl")[len(records):]
    assert sorted((r["problem"], r["mode"]) for r in added) == [(p, "topk:2") for p in range(3)]
