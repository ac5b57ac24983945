"""Typed errors. Every message names the file, tensor or field, what was expected and what was found."""
from __future__ import annotations


class EdgegenError(Exception):
    """Base of every error edgegen raises on purpose; the CLI prints it as one line."""


class ModelFileError(EdgegenError):
    """A model file is missing, truncated, malformed or inconsistent."""


class UnsupportedModelError(EdgegenError):
    """The file is well formed but uses an architecture, tensor type or feature we do not run."""


class TokenizerError(EdgegenError):
    """The tokenizer described by a model file cannot be built or used."""


class ContextLengthError(EdgegenError):
    """A prompt or generation does not fit in the model's context window."""


class ConversionError(EdgegenError):
    """A checkpoint cannot be converted (missing files, unsupported layout or quantization)."""


class MissingDependencyError(EdgegenError):
    """An optional dependency is not installed; the message carries the exact install command."""


class UsageError(EdgegenError):
    """Invalid arguments from the caller (API or CLI)."""


class ChatTemplateError(EdgegenError):
    """A chat template cannot be compiled or rendered: syntax error, sandbox violation, undefined
    value, or the template's own raise_exception (e.g. roles out of order)."""


class GrammarError(UsageError):
    """A JSON schema, regex or grammar constraining the output is invalid, or a token it does not allow
    was chosen."""
