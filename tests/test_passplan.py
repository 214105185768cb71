"""Pass plans: the cheapest way to read n tokens from measured costs per pass size."""

from __future__ import annotations

import json

import pytest

from autojudge.errors import ModelLoadError
from autojudge.models.passplan import PassPlan, load_pass_plan

# Shaped like the default target on one thread (docs/bench/pass-shapes): 16 tokens cost
# less than 15, and 2 tokens in one pass cost more than in two.
TILED = {1: 0.021, 2: 0.073, 3: 0.091, 4: 0.097, 8: 0.131, 15: 0.215, 16: 0.159, 17: 0.201}


def total_cost(plan: PassPlan, n: int) -> float:
    return sum(plan.seconds[size] for _, size in plan(n))


def test_a_plan_pads_to_a_cheaper_tile_and_splits_small_passes():
    plan = PassPlan.from_costs(TILED)
    assert plan(15) == ((15, 16),)  # one throwaway token: 159 ms instead of 215
    assert plan(2) == ((1, 1), (1, 1))  # 2 x 21 ms instead of 73
    assert plan(16) == ((16, 16),)
    for n in range(1, 18):
        chunks = plan(n)
        assert sum(real for real, _ in chunks) == n and all(size >= real for real, size in chunks)
        if n in TILED:
            assert total_cost(plan, n) <= TILED[n]


def test_a_plan_keeps_the_plain_pass_unless_it_saves_enough():
    # 4 tokens: two passes of 2 would cost 0.098, 2% less than 0.1: within timing noise.
    plan = PassPlan.from_costs({1: 0.04, 2: 0.049, 4: 0.1})
    assert plan(4) == ((4, 4),)
    assert plan(3) == ((1, 1), (2, 2))  # unmeasured: 89 ms, less than padding to 4 (100 ms)
    assert plan(40) == ((40, 40),)  # beyond the table: as given


def test_costs_without_positive_seconds_are_refused():
    with pytest.raises(ValueError, match="positive seconds"):
        PassPlan.from_costs({1: 0.0, 2: 0.1})
    with pytest.raises(ValueError):
        PassPlan.from_costs({})


def _costs_file(tmp_path, gguf="t.gguf", threads=1):
    path = tmp_path / "costs.json"
    backend = {"backend": "llama.cpp", "gguf": gguf, "threads": threads}
    path.write_text(json.dumps({"pair": {"target": "t", "target_backend": backend, "draft": "d",
                                         "draft_backend": {**backend, "gguf": "d.gguf"}},
                                "target": {str(n): s for n, s in TILED.items()}, "draft": {"1": 0.01}}))
    return path


def test_a_costs_file_gives_each_model_its_own_plan(tmp_path):
    path = _costs_file(tmp_path)
    described = {"backend": "llama.cpp", "gguf": "t.gguf", "threads": 1}
    assert load_pass_plan(path, "t", described)(15) == ((15, 16),)
    assert load_pass_plan(path, "d", {**described, "gguf": "d.gguf"})(3) == ((3, 3),)


@pytest.mark.parametrize("change, message", [
    ({"threads": 2}, "threads 1, this model runs with 2"),
    ({"gguf": "other.gguf"}, "gguf 't.gguf', this model runs with 'other.gguf'"),
])
def test_costs_of_another_model_file_or_thread_count_are_refused(tmp_path, change, message):
    path = _costs_file(tmp_path)
    described = {"backend": "llama.cpp", "gguf": "t.gguf", "threads": 1, **change}
    with pytest.raises(ModelLoadError, match=message):
        load_pass_plan(path, "t", described)


def test_a_missing_or_foreign_costs_file_is_one_clear_error(tmp_path):
    with pytest.raises(ModelLoadError, match="not a pass-costs file"):
        load_pass_plan(tmp_path / "absent.json", "t", {})
    (tmp_path / "other.json").write_text("[1, 2]")
    with pytest.raises(ModelLoadError, match="not a pass-costs file"):
        load_pass_plan(tmp_path / "other.json", "t", {})
    with pytest.raises(ModelLoadError, match="no pass costs of x"):
        load_pass_plan(_costs_file(tmp_path), "x", {})
