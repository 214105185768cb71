"""The command line's grammar: every command, option and argument type."""

from __future__ import annotations

import argparse

from autojudge.decoding import defaults
from autojudge.models.registry import DEFAULT_DRAFT, DEFAULT_TARGET, REGISTERED
from autojudge.models.runtime import AUTO, BACKEND_CHOICES, RUNTIMES
from autojudge.tasks.base import CHECKER_THRESHOLD

# The splits a task's load(split) is asked for (autojudge.tasks.contract.SPLITS).
_SPLIT_HELP = "mine (problems to mine and train on), eval (held out, for evaluation) or all"
# Every decoding mode by name (autojudge.decoding.modes).
_MODES_HELP = ("target (the target alone), exact (lossless speculative decoding), topk:K, fly[:H[:L]] (FLy), "
               "typical[:E[:A]] (typical acceptance), judge:THRESHOLD[:L], judge@RECALL[:L], "
               "judge-or-fly:THRESHOLD[:H[:L]] and judge-or-fly@RECALL[:H[:L]] (what the judge or FLy keeps)")

EVAL_MODES = "target,exact,topk:4,topk:16,judge:0.05,judge:0.2,judge:0.5"
# autojudge.vllm_plugin.evaluate.DEFAULT_MODES, spelled here so that help needs no vLLM.
VLLM_EVAL_MODES = "target,exact,judge@0.95,judge@0.9,judge@0.8"

_BUDGET_HELP = ("default: the task's budget (GSM8K 1024, MBPP and HumanEval 512, naturalqs and squad 256; "
                "512 for a free prompt)")


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def _non_negative(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {value}")
    return value


def _probability(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"must lie in [0, 1], got {value:g}")
    return value


def _registered_model(name: str) -> str:
    if name not in REGISTERED:
        raise argparse.ArgumentTypeError(
            f"unknown model {name!r} (registered: {', '.join(sorted(REGISTERED))})")
    return name


def _shard(text: str) -> tuple[int, int]:
    index, _, count = text.partition("/")
    try:
        shard = int(index), int(count)
    except ValueError:
        raise argparse.ArgumentTypeError(f"write I/N, e.g. 1/2; got {text!r}") from None
    if not 1 <= shard[0] <= shard[1]:
        raise argparse.ArgumentTypeError(f"need 1 <= I <= N, got {text!r}")
    return shard


def _add_ray_options(command: argparse.ArgumentParser, verb: str) -> None:
    command.add_argument("--ray", nargs="?", const="local", metavar="ADDRESS",
                         help=f"{verb} on a Ray cluster: alone, a local one on this machine; 'auto' or an address, "
                              "a running one (ray start --head)")
    command.add_argument("--ray-workers", type=_positive, default=2, help="Ray actors, each loading the pair once")
    command.add_argument("--ray-cpus", type=float, default=1, help="CPUs per Ray worker (default: %(default)s)")
    command.add_argument("--ray-gpus", type=float, default=0, help="GPUs per Ray worker (default: %(default)s)")
    command.add_argument("--ray-pin", action="store_true",
                         help="pin Ray worker i to cores i*C..(i+1)*C-1 (C = --ray-cpus) of its node, so that "
                              "workers do not share cores (one node)")


def _add_checker_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--checker", metavar="MODEL",
                        help="model that compares answers, for tasks no program can check (naturalqs, squad): "
                             "a registered name, local directory or Hugging Face id (default: the target)")
    parser.add_argument("--checker-threshold", type=_probability, default=CHECKER_THRESHOLD, metavar="P",
                        help="the checker calls two answers the same when p(same) >= P (default: %(default)s)")


def _add_pair_options(parser: argparse.ArgumentParser, backends: bool = True, decoding: bool = False) -> None:
    # Commands that decode for a user take the measured defaults' pair (decoding.defaults);
    # mining, training and their benches stay on the pair their data was made with.
    parser.add_argument("--draft", default=defaults.DRAFT if decoding else DEFAULT_DRAFT,
                        help="registered name, local directory or Hugging Face id (default: %(default)s)")
    parser.add_argument("--target", default=defaults.TARGET if decoding else DEFAULT_TARGET,
                        help="as --draft (default: %(default)s)")
    if backends:
        parser.add_argument("--backend", choices=BACKEND_CHOICES, default=AUTO,
                            help="runtime for both models (default: %(default)s: llamacpp on CPU for "
                                 "GGUF-backed models, else torch)")
        parser.add_argument("--draft-backend", choices=list(RUNTIMES),
                            help="another runtime for the draft only (a mixed pair)")
        parser.add_argument("--uniform-passes", action="store_true",
                            help="llama.cpp: read a lone new token together with the one before it, so that every "
                                 "logit comes from the same many-token kernels (Q4_0 weights: exact speculative "
                                 "decoding then reproduces the target alone; slower target-only decoding)")
        parser.add_argument("--feature-layer", type=int, metavar="N",
                            help="the target layer whose output the judge reads (default: the last, after the "
                                 "final norm); a judge brings its own")
        parser.add_argument("--device", default="cpu",
                            help="torch device for the models, e.g. cuda or cuda:1 (default: %(default)s; "
                                 "with --backend auto, a GPU means torch)")
        parser.add_argument("--dtype", choices=["auto", "float32", "bfloat16", "float16"], default="auto",
                            help="torch weights (default: auto: float32 on CPU, bfloat16 on a GPU)")
        parser.add_argument("--no-cuda-graphs", dest="cuda_graphs", action="store_false",
                            help="on a GPU, run each torch step eagerly instead of replaying a CUDA graph")
    parser.add_argument("--linear", choices=["onednn", "default"], default="onednn",
                        help="torch CPU float32 linear kernels (default: %(default)s, faster verification)")


def _add_draft_options(parser: argparse.ArgumentParser, what: str = "", drafter: str | None = None,
                       draft_length: str | None = None) -> None:
    """--window, --draft-p-min, --draft-length and --drafter, at the measured defaults
    (`drafter`, `draft_length`: a command's own, e.g. eval's)."""
    parser.add_argument("--window", type=_positive, default=defaults.WINDOW,
                        help=f"{what}draft tokens per cycle, up to 64 (default: %(default)s)")
    parser.add_argument("--draft-p-min", type=_probability, default=defaults.DRAFT_P_MIN, metavar="P",
                        help=f"{what}adaptive draft length: stop drafting before a token the draft gives a "
                             "probability below P; 0: the whole window (default: %(default)s)")
    parser.add_argument("--draft-length", choices=defaults.DRAFT_LENGTHS, default=draft_length or defaults.DRAFT_LENGTH,
                        help=f"{what}fixed: up to --window tokens every cycle; adaptive: each cycle the count "
                             "with the most expected tokens per second from the acceptance and pass times "
                             "measured so far, zero (the target alone) included; auto: adaptive for a lookup, "
                             "fixed for the model (default: %(default)s)")
    parser.add_argument("--drafter", choices=defaults.DRAFTERS, default=drafter or defaults.DRAFTER,
                        help=f"{what}model: the draft model proposes; lookup: n-grams of the prompt and the "
                             "text so far, no draft model (exact, topk, fly, typical and target-only judges); "
                             "auto: a lookup for exact decoding on a CPU unless --draft names a model, else the model "
                             "(default: %(default)s)")


def _add_judge_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--judge", metavar="PATH",
                        help="judge file from `autojudge train` (default: the judge shipped for the "
                             "default pair and the task)")
    limit = parser.add_mutually_exclusive_group()
    limit.add_argument("--threshold", type=_probability, help="--mode judge: accept a mismatch when "
                       "P(important) < THRESHOLD")
    limit.add_argument("--recall", type=_probability, help="--mode judge: the threshold whose validation "
                       "recall of important mismatches is RECALL (judge@RECALL; without --threshold or --recall, "
                       f"--mode judge runs the measured best judge mode, {defaults.JUDGE_MODE})")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="autojudge", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress details")
    commands = parser.add_subparsers(dest="command", required=True)

    models = commands.add_parser("models", help="the offline default model pair")
    models_cmd = models.add_subparsers(dest="models_command", required=True)
    fetch = models_cmd.add_parser("fetch", help="download, verify and convert the default pair")
    # Names are checked by `type`, not `choices`: argparse (Python 3.11 here) checks an
    # empty positional list against `choices` and so rejected the bare `models fetch`.
    fetch.add_argument("names", nargs="*", type=_registered_model, metavar="NAME",
                       help="registered models to fetch (default: the default pair)")
    models_cmd.add_parser("list", help="registered models and whether they are cached")

    data = commands.add_parser("data", help="the offline datasets")
    data.add_subparsers(dest="data_command", required=True).add_parser(
        "fetch", help="download and verify GSM8K, MBPP and HumanEval")

    gen = commands.add_parser("generate", help="decode one prompt")
    source = gen.add_mutually_exclusive_group(required=True)
    source.add_argument("--prompt", help="user message (sent through the chat template)")
    source.add_argument("--gsm8k", type=int, metavar="ID", help="GSM8K test problem id (0-1318)")
    source.add_argument("--problem", type=int, metavar="ID",
                        help="problem ID of --task: its prompt is built by the task, its answer checked")
    gen.add_argument("--task", help="the task of --problem (a built-in name or module:Class); with --prompt, "
                                    "the task whose shipped judge --mode judge uses")
    _add_pair_options(gen, decoding=True)
    gen.add_argument("--mode", default="exact",
                     help="target, exact, topk (with --topk), judge (the measured best judge mode, "
                          f"{defaults.JUDGE_MODE}; with --threshold or --recall, judge:T or judge@R), or any mode "
                          "by name: topk:K, fly[:H[:L]], typical[:E[:A]], judge:T[:L], judge@R[:L], "
                          "judge-or-fly@R[:H[:L]] "
                          "(default: %(default)s)")
    _add_draft_options(gen)
    gen.add_argument("--topk", type=_positive, default=4, help="K for --mode topk")
    _add_judge_options(gen)
    gen.add_argument("--max-new-tokens", type=_positive, help=_BUDGET_HELP)
    gen.add_argument("--json", action="store_true", help="print one JSON object")

    bench = commands.add_parser("bench", help="methods on several runtimes and windows, side by side: "
                                              "target alone, HF assisted, ours")
    _add_pair_options(bench, backends=False)
    bench.add_argument("--task", default="gsm8k", help="task name (default: %(default)s)")
    bench.add_argument("--split", default="eval", help=f"task split: {_SPLIT_HELP} (default: %(default)s)")
    bench.add_argument("--n", type=_positive, default=10, help="the first N problems of the split")
    bench.add_argument("--methods", default="torch/target,torch/assisted,torch/exact/w4,torch/exact/w8,"
                                            "torch/exact/w16,torch/exact/w32",
                       help="comma-separated runtime/mode[/wW][/pP]: runtime torch, llamacpp or torch+llamacpp "
                            "(a llama.cpp draft for a torch target); mode any --modes of eval, or assisted "
                            "(transformers' assisted generation, torch only); wW: W draft tokens per cycle; pP: "
                            "the draft stops before a token it gives a probability below P (default: %(default)s)")
    bench.add_argument("--judge", metavar="PATH", help="judge file for judge modes (default: the one shipped "
                                                       "for the task)")
    bench.add_argument("--max-new-tokens", type=_positive, help=_BUDGET_HELP)
    bench.add_argument("--out", default="runs/bench", help="run directory (resumed when it exists)")

    mine = commands.add_parser("mine", help="label important mismatches (Algorithm 1), resumable")
    mine.add_argument("--task", default="gsm8k", help="task name (default: %(default)s)")
    mine.add_argument("--split", default="mine", help=f"task split: {_SPLIT_HELP} (default: %(default)s)")
    mine.add_argument("--limit", type=_positive, help="first N problems of the split")
    mine.add_argument("--out", required=True, help="run directory (resumed when it exists)")
    _add_pair_options(mine)
    mine.add_argument("--window", type=_non_negative, default=4,
                      help="draft window for the first answer; 0: the target alone (default: %(default)s)")
    mine.add_argument("--max-new-tokens", type=_positive, help=_BUDGET_HELP)
    mine.add_argument("--shard", type=_shard, default=(1, 1), metavar="I/N",
                      help="mine every N-th problem from the I-th, e.g. 2/4; run N processes with "
                           "different --out and train on all their directories")
    mine.add_argument("--skip-mined", nargs="+", default=[], metavar="RUN",
                      help="leave out the problems these mining runs (of the same task and split) already "
                           "hold: extend a data set, say with another feature layer, without mining a "
                           "problem twice")
    mine.add_argument("--parallel", type=_positive, default=1, metavar="N",
                      help="mine N problems side by side, their passes merged (llama.cpp; more labels per "
                           "hour, the same up to near-ties: try 4 per core)")
    mine.add_argument("--plain", action="store_true",
                      help="regenerate with plain greedy decoding (slow reference; same labels)")
    mine.add_argument("--confirm", action="store_true",
                      help="keep a label important only if a second regeneration, through the other pass "
                           "layout, changes the answer too (sturdier labels on llama.cpp; one more "
                           "regeneration per important label)")
    _add_ray_options(mine, "mine")
    mine.add_argument("--rejoin", type=_non_negative, default=0, metavar="M",
                      help="shortcut (off: 0): a regeneration that re-joins the old response for M tokens "
                           "after an interchangeable stretch is not verified further; can change labels, "
                           "see bench-mining (GSM8K)")
    _add_checker_options(mine)

    calibrate = commands.add_parser("calibrate-checker",
                                    help="a model answer checker's agreement with a task's exact checker, "
                                         "on mined pairs")
    calibrate.add_argument("--task", default="gsm8k", help="a task with an exact checker (gsm8k, mbpp, humaneval)")
    calibrate.add_argument("--data", required=True, nargs="+", help="mining run directories of that task")
    calibrate.add_argument("--n", type=_positive, default=200, help="pairs to check (a seeded sample)")
    calibrate.add_argument("--seed", type=int, default=0)
    calibrate.add_argument("--out", required=True,
                           help="run directory: records.jsonl (resumed when it exists), summary.md and .json")
    _add_checker_options(calibrate)
    _add_pair_options(calibrate)

    mbench = commands.add_parser("bench-mining", help="plain vs fast mining on the same problems")
    mbench.add_argument("--task", default="gsm8k")
    mbench.add_argument("--split", default="mine", help=f"task split: {_SPLIT_HELP} (default: %(default)s)")
    mbench.add_argument("--n", type=_positive, default=2, help="first N problems of the split")
    mbench.add_argument("--max-new-tokens", type=_positive, help=_BUDGET_HELP)
    mbench.add_argument("--methods", default="plain,fast",
                        help="comma-separated regeneration methods, the first the reference: plain, fast, "
                             "fast+rejoin:M, each optionally +confirm (default: %(default)s)")
    mbench.add_argument("--parallel", type=_positive, default=1, metavar="N",
                        help="also mine the problems N side by side (llama.cpp), with each method of "
                             "--side-by-side")
    mbench.add_argument("--side-by-side", metavar="METHODS",
                        help="comma-separated methods to mine side by side too (default: the last method)")
    mbench.add_argument("--out", required=True,
                        help="run directory: records.jsonl (resumed when it exists) and summary.md")
    _add_pair_options(mbench)

    noise = commands.add_parser("noise-floor", help="null swaps: regenerate with the target's own token, "
                                                    "count answers that change anyway")
    noise.add_argument("--task", default="gsm8k")
    noise.add_argument("--split", default="mine", help=f"task split: {_SPLIT_HELP} (default: %(default)s)")
    noise.add_argument("--n", type=_positive, default=70, help="first N problems of the split")
    noise.add_argument("--per-problem", type=_positive, default=3, help="null swaps per answer")
    noise.add_argument("--max-new-tokens", type=_positive)
    noise.add_argument("--seed", type=int, default=0, help="seed of the positions")
    noise.add_argument("--out", required=True,
                       help="run directory: records.jsonl (resumed when it exists) and summary.md")
    _add_pair_options(noise)
    _add_checker_options(noise)

    rules = commands.add_parser("rule-features", help="add the training-free rules' features (FLy's top-3 "
                                                      "entropy and lookahead) to mined labels, resumable")
    rules.add_argument("--data", required=True, nargs="+", help="mining runs, completed in place (their rules/)")
    rules.add_argument("--limit", type=_positive, help="only each run's first N labelled problems")
    _add_pair_options(rules)

    contrast = commands.add_parser("contrast-labels", help="for each important label, sample a continuation "
                                                           "with the target's own token kept (the contrast "
                                                           "label definition), resumable")
    contrast.add_argument("--data", required=True, nargs="+", help="mining runs, completed in place (contrast.jsonl)")
    contrast.add_argument("--limit", type=_positive, help="only each run's first N labelled problems")
    contrast.add_argument("--temperature", type=float, default=0.7, help="of the nudge (default: %(default)s)")
    _add_pair_options(contrast)

    h2h = commands.add_parser("head-to-head", help="every acceptance rule and judge as a classifier of held-out "
                                                   "labels, per label definition, with bootstrap intervals")
    h2h.add_argument("--data", required=True, nargs="+", help="mining runs of one task (their shards)")
    h2h.add_argument("--labels", default="answer-changed,correctness-lost",
                     help="comma-separated label definitions: answer-changed, correctness-lost, contrast "
                          "(default: %(default)s)")
    h2h.add_argument("--draws", type=_positive, default=1000, help="bootstrap draws, by problem (default: %(default)s)")
    h2h.add_argument("--out", required=True, metavar="PREFIX", help="write PREFIX.json (the rows) and PREFIX.md")

    train = commands.add_parser("train", help="fit the judge on a mining run")
    train.add_argument("--data", required=True, nargs="+",
                       help="one or more directories written by `autojudge mine` (e.g. its shards)")
    train.add_argument("--features", default="hidden",
                       choices=["draft", "target", "hidden", "both", "logits", "target+logits", "all", "logits+rules",
                                "target+logits+rules", "target+target-logits"],
                       help="hidden: both models' hidden states (also called both); logits: six logit features "
                            "(log-probabilities, rank, entropies); all: both; +rules: FLy's top-3 entropy and "
                            "lookahead too (after `autojudge rule-features`); target+target-logits: the target's "
                            "alone, a judge for any drafter (--drafter lookup too) (default: %(default)s)")
    train.add_argument("--reuse", nargs="+", metavar="DIR", default=[],
                       help="mining runs at a smaller budget (same task and pair) whose labels a larger "
                            "budget provably leaves alone (both texts ended before it): added to the "
                            "training labels, never scored; hidden-state features only")
    train.add_argument("--borrow", nargs="+", metavar="DIR", default=[],
                       help="mining runs of another task, same pair, runtimes and feature layer (e.g. GSM8K "
                            "for an MBPP judge): its labels are added to the training labels of every fold, "
                            "never scored; the report shows the AUC with them and without")
    train.add_argument("--labels", choices=["answer-changed", "correctness-lost", "contrast"], default="answer-changed",
                       help="what makes a mismatch important: answer-changed (Algorithm 1, the paper's), "
                            "correctness-lost (the target's right answer turns wrong; needs gold answers), "
                            "contrast (the answer changed where a nudge without a swap keeps it; needs "
                            "`autojudge contrast-labels`) (default: %(default)s)")
    train.add_argument("--out", required=True, help="judge file to write (.safetensors)")
    train.add_argument("--force", action="store_true",
                       help="write the judge even when its cross-validated ROC-AUC is below 0.5 (worse than chance)")
    train.add_argument("--seed", type=int, default=0, help="seed of the by-problem split")
    train.add_argument("--report", metavar="PREFIX",
                       help="also write PREFIX.md/.json/.png: cross-validated AUC per feature set (with "
                            "and without --reuse labels), and against the number of training problems")

    task = commands.add_parser("task", help="check a task of your own before mining it")
    task_cmd = task.add_subparsers(dest="task_command", required=True)
    check = task_cmd.add_parser("check", help="the task contract (methods, arguments, splits) and a dry run of "
                                              "extraction and equivalence on the problems' references; no model")
    check.add_argument("task", nargs="?", metavar="TASK", help="module:Class, or a built-in task name")
    check.add_argument("--task", dest="task_option", metavar="TASK", help="the same, as an option")
    check.add_argument("--limit", type=_positive, help="dry-run the first N problems only (default: all)")

    costs = commands.add_parser("costs", help="per-pass costs and the speed-up ceiling (cost model)")
    _add_pair_options(costs)
    costs.add_argument("--context", type=_positive, default=300, help="KV-cache length to time at")
    costs.add_argument("--repeats", type=_positive, default=3, help="timed passes per size (median)")
    costs.add_argument("--out", help="write the costs as JSON here")
    costs.add_argument("--check", metavar="BENCH_DIR",
                       help="instead of measuring: compare the cost model's predictions with a bench run, "
                            "using --torch-costs and --llamacpp-costs")
    costs.add_argument("--torch-costs", default="docs/bench/costs-torch.json")
    costs.add_argument("--llamacpp-costs", default="docs/bench/costs-llamacpp.json")

    ev = commands.add_parser("eval", help="accuracy against speed per decoding mode, resumable")
    ev.add_argument("--task", default="gsm8k",
                    help="gsm8k, mbpp, humaneval, naturalqs, squad or module:Class (default: %(default)s)")
    ev.add_argument("--split", default="eval", help=f"task split: {_SPLIT_HELP} (default: %(default)s)")
    ev.add_argument("--limit", type=_positive, help="first N problems of the split")
    ev.add_argument("--modes", help=f"comma-separated modes: {_MODES_HELP} (default: {EVAL_MODES}; with "
                                    f"--engine vllm: {VLLM_EVAL_MODES})")
    ev.add_argument("--engine", choices=["autojudge", "vllm"], default="autojudge",
                    help="autojudge: its own engine, one problem at a time, timed; vllm: vLLM's offline LLM with "
                         "the judge as its acceptance rule (autojudge.vllm_plugin), problems batched, in .venv-vllm "
                         "(docs/vllm.md): target, exact and judge modes, the float32 pair (default: %(default)s)")
    ev.add_argument("--batch", type=_positive, default=16, metavar="N",
                    help="--engine vllm: problems per batch, every mode decoding a batch in an engine of its own "
                         "before the next batch starts; records are written per batch (default: %(default)s)")
    # eval compares modes with one drafter, the draft model: exact is every lossy mode's baseline.
    _add_draft_options(ev, drafter=defaults.EVAL_DRAFTER, draft_length=defaults.EVAL_DRAFT_LENGTH)
    ev.add_argument("--parallel", type=_positive, default=1, metavar="N",
                    help="decode N problems side by side, their passes merged (llama.cpp): faster accuracy and "
                         "tokens per cycle; such records are left out of tokens/s (default: %(default)s)")
    ev.add_argument("--max-new-tokens", type=_positive, help=_BUDGET_HELP)
    ev.add_argument("--judge", metavar="PATH", help="judge file (default: the shipped judge for the task)")
    ev.add_argument("--out", required=True, help="run directory (resumed when it exists)")
    ev.add_argument("--report-only", action="store_true",
                    help="decode nothing: write the report from the problems done so far")
    ev.add_argument("--rescore", action="store_true",
                    help="score every record's text again with the task's current rules before reporting "
                         "(after a change to answer extraction or scoring; code tasks rerun their tests)")
    ev.add_argument("--retime", action="store_true",
                    help="decode again, with their baselines, the records whose clock ran without them (paused, "
                         "or their core shared), which the report leaves out of tokens/s; run it on a quiet core")
    _add_ray_options(ev, "decode")
    _add_pair_options(ev, decoding=True)

    serve = commands.add_parser("serve", help="an OpenAI-compatible HTTP server (chat, completions, streaming)")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=_positive, default=8000)
    serve.add_argument("--mode", default="exact", help="default decoding mode; a request may name its own "
                                                       "(default: %(default)s)")
    serve.add_argument("--window", type=_positive, default=defaults.WINDOW,
                       help="default draft tokens per cycle (default: %(default)s)")
    serve.add_argument("--draft-p-min", type=_probability, default=defaults.DRAFT_P_MIN, metavar="P",
                       help="default adaptive draft length (0: fixed windows; default: %(default)s)")
    serve.add_argument("--max-tokens", dest="max_new_tokens", type=_positive, default=512,
                       help="a request's default budget")
    serve.add_argument("--max-waiting", type=_positive, default=16,
                       help="requests that may wait for a slot; one more gets a 503 (default: %(default)s)")
    serve.add_argument("--slots", type=_positive, help="requests that decode at once, their passes merged "
                       "(default: 4 on llama.cpp; torch holds one sequence per model: 1, and more is refused)")
    serve.add_argument("--task", help="serve the judge modes with this task's shipped judge (gsm8k, mbpp)")
    serve.add_argument("--judge", metavar="PATH", help="serve the judge modes with this judge file")
    _add_pair_options(serve, decoding=True)

    demo = commands.add_parser("demo", help="answer GSM8K eval problems with the default pair: the target alone, "
                                            "exact and judge decoding side by side")
    demo.add_argument("--n", type=_positive, default=3)
    demo.add_argument("--window", type=_positive, default=defaults.WINDOW,
                      help="draft tokens per cycle (default: %(default)s)")
    demo.add_argument("--draft-p-min", type=_probability, default=defaults.DRAFT_P_MIN, metavar="P",
                      help="adaptive draft length (0: fixed windows; default: %(default)s)")
    demo.add_argument("--max-new-tokens", type=_positive, help=_BUDGET_HELP)
    demo.add_argument("--backend", choices=BACKEND_CHOICES, default=AUTO,
                      help="the shipped judge fits the llama.cpp pair (default: %(default)s)")
    demo.add_argument("--judge", metavar="PATH", help="judge file (default: the shipped GSM8K judge)")
    limit = demo.add_mutually_exclusive_group()
    limit.add_argument("--threshold", type=_probability, help="the judge mode judge:THRESHOLD")
    limit.add_argument("--recall", type=_probability,
                       help="the judge mode judge@RECALL, the threshold by validation recall of important "
                            f"mismatches (default: neither, the measured best judge mode, {defaults.JUDGE_MODE})")
    return parser
