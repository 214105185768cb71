"""The judge: a scaled logistic regression on [draft; target] hidden states.

`model` holds the trained judge and its safe file format; `train` fits it on a mining
run. The decoding stage's `JudgePolicy` (autojudge.decoding.policies) turns a judge into
an acceptance policy.
"""
