"""Answer equivalence decided by a language model, for tasks no program can check.

A task with a checker (an open question, say) asks a model whether two responses give
the same final answer to the question. The prompt is fixed (`CHECK_PROMPT`); the
verdict is read from the model's next-token distribution after it, never from free
text: p(same) = P(yes) / (P(yes) + P(no)), each summed over the spellings of the word
("yes", "Yes", " yes", ...; one token each in real tokenizers). The responses are the same when
p(same) >= `threshold` (0.6 by default; calibrate it with `autojudge calibrate-checker`).

The checker runs on any backend (autojudge.models.backend): by default on another
sequence of the loaded target (no second copy of the weights, no disturbance of the
decoding cache), or on a model of the user's choosing. Verdicts are cached by the
question and the two responses, so a pair met twice costs nothing.
"""

from __future__ import annotations

import hashlib
import threading

import torch

from autojudge.models.backend import CausalLM, keep_shared_prefix
from autojudge.prompting import chat_prompt_ids
from autojudge.tasks.base import CHECKER_THRESHOLD, Verdict

# Four worked examples first: a 1.5B model asked without them says "yes" to nearly
# everything (p(same) 0.6-0.85 for "Marconi" against "July 1899"); with them its
# p(same) spreads out. They come before the question, so consecutive checks share them
# in the model's cache and pay for them once.
CHECK_PROMPT = (
    "You decide whether two responses to a question give the same final answer.\n\n"
    "Examples:\n"
    "Question: How many apples are left?\nResponse A: ... so 12 - 5 = 7 apples are left.\n"
    "Response B: She has 7 left.\nSame final answer: yes\n\n"
    "Question: Who painted the Mona Lisa?\nResponse A: Answer: Leonardo da Vinci\n"
    "Response B: Answer: Michelangelo\nSame final answer: no\n\n"
    "Question: When did the war end?\nResponse A: Answer: 1945\nResponse B: It ended in May 1945.\n"
    "Same final answer: yes\n\n"
    "Question: How much does he pay in total?\nResponse A: The total is $42.\nResponse B: The answer is 48.\n"
    "Same final answer: no\n\n"
    "Now this one.\nQuestion:\n{question}\n\n"
    "Response A:\n{a}\n\n"
    "Response B:\n{b}\n\n"
    "Do responses A and B give the same final answer to the question? Wording, "
    "explanations, units and formatting do not matter, only the final answer does. "
    "Reply with one word: yes or no."
)
# A response is cut to its last characters: the final answer stands at the end, and a
# bound keeps every check one short pass.
MAX_RESPONSE_CHARS = 800
# The default verdict threshold (tasks.base.CHECKER_THRESHOLD), from a pilot of 12 GSM8K
# and 11 SQuAD pairs: with this prompt the 1.5B default target gives different answers
# p(same) 0.1-0.67 and equal ones 0.36-0.94; `autojudge calibrate-checker` on 200 GSM8K
# pairs puts agreement at 91% there.
DEFAULT_THRESHOLD = CHECKER_THRESHOLD
YES_WORDS = ("yes", "Yes", "YES", " yes", " Yes")
NO_WORDS = ("no", "No", "NO", " no", " No")


class LLMEquivalence:
    """p(same) for two responses to a question, from one pass of `model` (see module doc)."""

    def __init__(self, model: CausalLM, tokenizer, threshold: float = DEFAULT_THRESHOLD):
        if not 0 < threshold < 1:
            raise ValueError(f"the checker's threshold must lie strictly between 0 and 1, not {threshold}")
        self.model, self.tokenizer, self.threshold = model, tokenizer, threshold
        yes, no = _first_token_ids(tokenizer, YES_WORDS), _first_token_ids(tokenizer, NO_WORDS)
        self.yes_ids, self.no_ids = sorted(yes - no), sorted(no - yes)
        if not self.yes_ids or not self.no_ids:
            raise ValueError(f"{model.name}: its tokenizer cannot tell yes from no by the first token; "
                             "choose another model for the checker")
        self._cache: dict[str, float] = {}
        self._lock = threading.Lock()  # one pass at a time on the model; guards the cache
        self.calls = 0  # passes run (cache misses), for cost accounting

    def p_same(self, question: str, a: str, b: str) -> float:
        key = hashlib.sha256("\x00".join((question, a, b)).encode()).hexdigest()
        with self._lock:
            if key not in self._cache:
                self._cache[key] = self._ask(question, a, b)
                self.calls += 1
            return self._cache[key]

    def verdict(self, question: str, a: str, b: str) -> Verdict:
        p = self.p_same(question, a, b)
        return Verdict(p >= self.threshold, p)

    def describe(self) -> dict:
        """What changes its verdicts: the model, its runtime, the prompt and the threshold."""
        runtime = {k: v for k, v in self.model.describe().items() if k != "threads"}  # the machine's, not the model's
        return {"model": self.model.name, "backend": runtime, "threshold": self.threshold,
                "prompt_sha256": hashlib.sha256(CHECK_PROMPT.encode()).hexdigest()[:16]}

    def prompt_ids(self, question: str, a: str, b: str) -> list[int]:
        text = CHECK_PROMPT.format(question=question.strip(), a=_tail(a), b=_tail(b))
        return chat_prompt_ids(self.tokenizer, [{"role": "user", "content": text}])

    def _ask(self, question: str, a: str, b: str) -> float:
        ids = self.prompt_ids(question, a, b)
        if len(ids) >= self.model.max_context:
            raise ValueError(f"the check holds {len(ids)} tokens; {self.model.name}'s context holds "
                             f"{self.model.max_context}")
        # Checks of one problem share the prompt's head (instruction, question): kept cached.
        keep = keep_shared_prefix(self.model, ids, len(ids) - 1)
        logits = self.model.forward(ids[keep:], n_logits=1).logits[-1]
        probs = torch.softmax(logits.float(), dim=-1)
        yes, no = probs[self.yes_ids].sum().item(), probs[self.no_ids].sum().item()
        return yes / (yes + no) if yes + no > 0 else 0.5


def _first_token_ids(tokenizer, words: tuple[str, ...]) -> set[int]:
    """The first token of each spelling: the whole word in any real tokenizer ("Yes" is one
    token in Qwen's, Llama's, GPT's), its first piece in a character-level one."""
    return {encoded[0] for word in words if (encoded := tokenizer.encode(word, add_special_tokens=False))}


def _tail(text: str) -> str:
    text = text.strip()
    return text if len(text) <= MAX_RESPONSE_CHARS else "..." + text[-MAX_RESPONSE_CHARS:]


def wants_checker(task) -> bool:
    """Whether the task compares answers with a model it is given (it has a `checker` attribute)."""
    return hasattr(task, "checker")


def attach_checker(task, model: CausalLM, tokenizer, threshold: float = DEFAULT_THRESHOLD) -> LLMEquivalence:
    """Give a task that compares answers with a model (see `wants_checker`) its checker on
    `model`: by default another sequence of the decoding target, which costs no second
    copy of the weights (autojudge.models.loading.model_beside)."""
    if not wants_checker(task):
        raise ValueError(f"the {task.name} task compares answers without a model")
    task.checker = LLMEquivalence(model, tokenizer, threshold)
    return task.checker
