"""autojudge: lossy, task-aware speculative decoding (AutoJudge, NeurIPS 2025).

Pipeline stages, one package each, lowest first; a stage imports only stages above it
in this list (tests/test_layout.py holds the code to it):

    errors, artifacts, prompting, runfiles -> errors, cached downloads, chat prompts, run files
    models      -> load a draft/target pair behind one backend interface, on any runtime
    workers     -> work over a pair in threads or on Ray workers (mining and evaluation)
    decoding    -> speculative decoding, acceptance policies, modes by name
    tasks       -> prompts, answer extraction and equivalence per task, the code sandbox
    mining      -> Algorithm 1: label the mismatches that change the answer
    judge       -> train the judge on mined labels; its acceptance policy
    evaluation  -> methods side by side: accuracy, accepted tokens, speed; the report; the cost model
    demo, serve -> the demo, the OpenAI-compatible server
    cli         -> the `autojudge` command
"""

__version__ = "0.1.0"
