"""autojudge: lossy, task-aware speculative decoding (AutoJudge, NeurIPS 2025).

Pipeline stages, one package each, data flowing downwards only:

    artifacts  -> fetch and cache the offline default models and datasets
    models     -> load a draft/target pair behind one backend interface
    tasks      -> prompts, answer extraction and equivalence per task
    decoding   -> speculative decoding with pluggable acceptance policies
    bench      -> side-by-side speed measurements
    cli        -> the `autojudge` command
"""

__version__ = "0.1.0"
