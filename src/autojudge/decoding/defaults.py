"""The decoding defaults of every command that decodes (generate, eval, serve, demo, the
library's DecodingOptions), held here once, each with the measurement that chose it.

Change a default only with a measurement on this machine class (one llama.cpp thread
per model, a quiet core): `scripts/bench_speed.py` runs the candidates side by side.
"""

from __future__ import annotations

from autojudge.models.registry import DRAFT_Q4_0, TARGET_Q4_0

# The Q4_0 copies of the pair: llama.cpp reads several tokens in one Q4_0 pass far more
# cheaply than in one Q4_K pass (docs/bench/pass-shapes), which is what verification
# runs. docs/bench/adaptive-q4_0-gsm8k: exact decoding on this pair at window 16 and
# p-min 0.8 ran at 0.94x the target alone, against 0.61x for the Q4_K_M pair at the old
# defaults (window 8, p-min 0). Made from the pinned Q4_K_M files on first use.
DRAFT = DRAFT_Q4_0.name
TARGET = TARGET_Q4_0.name

# docs/bench/adaptive-q4_0-gsm8k: window 16 with p-min 0.8 was the fastest exact
# configuration (20.00 tok/s; w8/p0.8 19.12, w16/p0.6 19.74, w32/p0.8 19.96, w8 17.30),
# and judge@0.8 on it the fastest lossy one at equal accuracy (0.97x the target alone).
WINDOW = 16
DRAFT_P_MIN = 0.8

# Which drafter, and whether the draft-length controller chooses each cycle's count.
# "auto", measured in docs/bench/speed-defaults, speed-shaped and speed-kept (one core,
# GSM8K and HumanEval; the last, with the controller kept across requests: 1.00x and
# 1.25x the target alone):
# - exact greedy decoding on a CPU: the lookup drafter (n-grams of the prompt and the
#   text so far, no model pass) under the controller, which verifies a lookup only
#   where its evidence has paid. The 0.5B draft model costs 0.4-0.5 of a target token
#   here, so no model-drafted configuration beat the target alone; a free draft can.
# - everything else (lossy modes, sampling, a GPU): the draft model, fixed length: the
#   lossy rules and speculative sampling read the draft's tokens or logits, and were
#   measured with it; on a GPU a draft token costs a small share of a target token.
DRAFTER = "auto"
DRAFT_LENGTH = "auto"

# eval compares modes against exact decoding with one drafter, the one the lossy modes
# need, so that tokens per cycle and speed ratios compare like with like.
EVAL_DRAFTER = "model"
EVAL_DRAFT_LENGTH = "fixed"

# The judge mode `--mode judge` and the demo run when no threshold or recall is named:
# the judge and FLy together, at the threshold of recall 0.95. It beat FLy where both were
# decoded on the same problems (Q4_0 pair, window 32; docs/eval/gsm8k-q4_0-w32 and
# humaneval-q4_0-w32, "Judge modes against the training-free rules"): GSM8K, 184
# problems, accuracy +2.2 points (-1.6 to +6.0) at 1.10x FLy's tokens per cycle (17.26
# against 15.76); HumanEval, 61 problems, +0.0 (-4.9 to +4.9) at 1.03x (25.01 against
# 24.34). The judge alone kept fewer tokens per cycle than FLy at every recall but 0.6,
# which lost accuracy on GSM8K.
JUDGE_MODE = "judge-or-fly@0.95"

DRAFT_LENGTHS = ("auto", "fixed", "adaptive")
DRAFTERS = ("auto", "model", "lookup")

# The lookup drafter's n-gram sizes: the longest tail of up to 8 tokens that occurred
# before, down to 3 (a 1- or 2-token match is copied on too rarely to verify:
# docs/bench/lookup-evidence).
LOOKUP_NGRAM = 8
LOOKUP_MIN_NGRAM = 3


def resolve(drafter: str, draft_length: str, *, exact_greedy: bool, on_cpu: bool,
            draft_named: bool = False) -> tuple[str, str]:
    """The drafter and draft length "auto" stands for in this decode (see DRAFTER); a
    draft model the user named (`draft_named`) is used, not replaced by a lookup."""
    if drafter == "auto":
        drafter = "lookup" if exact_greedy and on_cpu and not draft_named else "model"
    if draft_length == "auto":
        draft_length = "adaptive" if drafter == "lookup" else "fixed"
    return drafter, draft_length
