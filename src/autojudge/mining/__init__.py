"""Mining: label draft/target mismatches as important or not, without annotation.

`algorithm` is the paper's Algorithm 1 (semi-greedy search); `store` keeps results
resumable and crash-safe; `run` drives it over a task split with a progress bar.
"""
