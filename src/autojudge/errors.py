"""Errors a user can act on. The CLI prints them as one line, without a traceback."""


class AutojudgeError(Exception):
    """Base class for every error whose message is meant for the user."""


class FetchError(AutojudgeError):
    """A package could not be downloaded, or its content failed verification."""


class ModelLoadError(AutojudgeError):
    """A model path or id could not be loaded, or a pair does not fit together."""


class PromptError(AutojudgeError):
    """A prompt is empty or does not fit the model's context."""
