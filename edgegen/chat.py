"""Chat messages -> prompt text, through the model's own Jinja chat template, rendered in a sandbox.

    template = chat_template_for(gguf.metadata)          # the file's template, else ChatML
    prompt = render_chat(template, [{"role": "user", "content": "Hi"}], bos_token="<s>")

A chat template comes from a model file, so it is untrusted code. It runs in Jinja's
ImmutableSandboxedEnvironment, set up as Hugging Face transformers sets it up
(utils/chat_template_utils.py: trim_blocks, lstrip_blocks, the loopcontrols extension, a tojson
filter that does not HTML-escape, raise_exception and strftime_now), so a template renders here
exactly as ``tokenizer.apply_chat_template`` renders it. On top of that sandbox:
- reaching for an unsafe attribute (``__class__``, ``__globals__``, ``mro``...) fails at once
  instead of quietly yielding an undefined value;
- ``{% include %}``, ``{% import %}`` and ``{% extends %}`` find no templates (an empty loader),
  so nothing is read from disk;
- ``*`` and ``**`` refuse results above a size cap, so ``'x' * 10**12`` cannot exhaust memory.
Every failure (syntax, sandbox violation, undefined value, the template's own raise_exception)
becomes a ChatTemplateError naming the problem; none of it ever runs Python code.
"""
from __future__ import annotations

import functools
import json
import math
import operator
from datetime import datetime
from typing import Any, Mapping, NoReturn, Sequence

import jinja2
import jinja2.ext
from jinja2.sandbox import ImmutableSandboxedEnvironment, SecurityError

from edgegen.constants import Key
from edgegen.errors import ChatTemplateError, UsageError

__all__ = ["render_chat", "chat_template_for", "FALLBACK_TEMPLATE"]

# ChatML, used when a file carries no template of its own.
FALLBACK_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)

_MAX_REPEAT_LEN = 1 << 24          # items a `*` may build from a string or list (16 Mi)
_MAX_POW_BITS = 1 << 16            # bits an integer `**` may produce
_COMPILED_CACHE_SIZE = 32          # distinct templates kept compiled
# Errors a buggy (not malicious) template raises while rendering, e.g. {{ 'a' + 1 }} or {{ 1 / 0 }}.
_RENDER_BUGS = (TypeError, ValueError, ArithmeticError, LookupError, RecursionError)


def _raise_exception(message: Any) -> NoReturn:
    """The template's own error, e.g. "Conversation roles must alternate user/assistant/..."."""
    raise ChatTemplateError(f"chat template refused the messages: {message}")


def _tojson(x: Any, ensure_ascii: bool = False, indent: int | None = None,
            separators: tuple[str, str] | None = None, sort_keys: bool = False) -> str:
    """As transformers' tojson: plain json.dumps, without Jinja's HTML escaping."""
    return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)


def _strftime_now(fmt: str) -> str:
    return datetime.now().strftime(fmt)


class _ChatSandbox(ImmutableSandboxedEnvironment):
    """The transformers sandbox, plus: unsafe attributes fail at once, and `*` / `**` are size-capped."""

    intercepted_binops = frozenset({"*", "**"})

    def unsafe_undefined(self, obj: Any, attribute: str) -> NoReturn:
        raise SecurityError(f"access to attribute {attribute!r} of {type(obj).__name__!r} object is unsafe")

    def call_binop(self, context: jinja2.runtime.Context, op: str, left: Any, right: Any) -> Any:
        if op == "*":
            for seq, n in ((left, right), (right, left)):
                if isinstance(seq, (str, list, tuple)) and isinstance(n, int) and len(seq) * n > _MAX_REPEAT_LEN:
                    raise SecurityError(f"'*' would build {len(seq) * n} items, more than the limit {_MAX_REPEAT_LEN}")
            return operator.mul(left, right)
        if isinstance(left, int) and isinstance(right, int) and abs(left) > 1 and right > 0:
            if right * math.log2(abs(left)) > _MAX_POW_BITS:
                raise SecurityError(f"'**' would build an integer of more than {_MAX_POW_BITS} bits")
        return operator.pow(left, right)


def _make_environment() -> _ChatSandbox:
    env = _ChatSandbox(trim_blocks=True, lstrip_blocks=True, extensions=[jinja2.ext.loopcontrols],
                       loader=jinja2.DictLoader({}))
    env.filters["tojson"] = _tojson
    env.globals["raise_exception"] = _raise_exception
    env.globals["strftime_now"] = _strftime_now
    return env


_ENV = _make_environment()


@functools.lru_cache(maxsize=_COMPILED_CACHE_SIZE)
def _compile(template: str) -> jinja2.Template:
    try:
        return _ENV.from_string(template)
    except jinja2.TemplateSyntaxError as e:
        raise ChatTemplateError(f"chat template: syntax error at line {e.lineno}: {e.message}") from None


def _check_messages(messages: Sequence[Mapping]) -> list[dict[str, Any]]:
    """Plain dict copies of ``messages``, each checked to have a string role and a string content
    (None only for an assistant message that carries tool_calls)."""
    if isinstance(messages, (str, bytes)) or not isinstance(messages, Sequence):
        raise UsageError(f"messages: expected a list of {{'role': ..., 'content': ...}} mappings, "
                         f"found {type(messages).__name__}")
    checked = []
    for i, message in enumerate(messages):
        if not isinstance(message, Mapping):
            raise UsageError(f"messages[{i}]: expected a mapping with 'role' and 'content', "
                             f"found {type(message).__name__}")
        role = message.get("role")
        if not isinstance(role, str):
            found = "nothing" if role is None else f"{type(role).__name__} {role!r}"
            raise UsageError(f"messages[{i}].role: expected a string, found {found}")
        content = message.get("content")
        tool_call = role == "assistant" and bool(message.get("tool_calls"))
        if not isinstance(content, str) and not (content is None and tool_call):
            found = "nothing" if content is None else f"{type(content).__name__}"
            raise UsageError(f"messages[{i}].content: expected a string (None only for an assistant message "
                             f"with tool_calls), found {found}")
        checked.append(dict(message))
    return checked


def render_chat(template: str | None, messages: Sequence[Mapping], *, add_generation_prompt: bool = True,
                bos_token: str = "", eos_token: str = "", **extra: Any) -> str:
    """Render ``messages`` with a chat template (None: the ChatML fallback).

    ``extra`` values reach the template as variables (e.g. ``tools``, ``date_string``); ``tools``
    and ``documents`` are None unless given, as in transformers."""
    checked = _check_messages(messages)
    compiled = _compile(FALLBACK_TEMPLATE if template is None else template)
    context = {"tools": None, "documents": None, **extra}
    try:
        return compiled.render(messages=checked, add_generation_prompt=add_generation_prompt,
                               bos_token=bos_token, eos_token=eos_token, **context)
    except SecurityError as e:
        raise ChatTemplateError(f"chat template broke the sandbox rules: {e}") from None
    except jinja2.UndefinedError as e:
        raise ChatTemplateError(f"chat template used an undefined value: {e}") from None
    except jinja2.TemplateError as e:  # e.g. {% include %} of a template that is not there
        raise ChatTemplateError(f"chat template failed: {type(e).__name__}: {e}") from None
    except _RENDER_BUGS as e:
        raise ChatTemplateError(f"chat template failed: {type(e).__name__}: {e}") from None


def chat_template_for(metadata: Mapping[str, Any]) -> str:
    """The file's chat template (tokenizer.chat_template), or the ChatML fallback when it has none
    (the key is absent or blank)."""
    template = metadata.get(Key.CHAT_TEMPLATE.value)
    if template is not None and not isinstance(template, str):
        raise ChatTemplateError(f"{Key.CHAT_TEMPLATE.value}: expected a string, found {type(template).__name__}")
    return template if template and template.strip() else FALLBACK_TEMPLATE
