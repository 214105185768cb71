"""The judge: a scaled logistic regression on [draft; target] hidden states.

`model` holds the trained judge and its safe file format; `train` fits it on a mining
run; `policy` turns it into an acceptance policy for the decoding engine.
"""

from autojudge.judge import policy  # noqa: E402,F401  (registers the judge's decoding modes)
