"""One prompt format for every stage: the model's chat template, zero-shot."""

from __future__ import annotations

from autojudge.errors import PromptError


def chat_prompt_ids(tokenizer, messages: list[dict[str, str]]) -> list[int]:
    """Token ids of `messages` followed by the assistant's turn opening."""
    if not any(m["content"].strip() for m in messages):
        raise PromptError("the prompt is empty")
    if getattr(tokenizer, "chat_template", None):
        encoded = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=True)
        ids = list(encoded["input_ids"] if hasattr(encoded, "keys") else encoded)
    else:  # a base model without a template: plain text, one message after another
        ids = tokenizer("\n\n".join(m["content"] for m in messages))["input_ids"]
    if not ids:
        raise PromptError("the prompt encoded to no tokens; does the model ship a working tokenizer?")
    return ids
