"""Accuracy against speed per decoding mode, like the paper's Figure 3."""
