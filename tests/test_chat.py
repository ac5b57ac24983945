"""Chat templates: the bundled model's template, parity with transformers' apply_chat_template on
real-world-shaped templates, template-injection payloads refused, message checks."""
from __future__ import annotations

import pytest

from edgegen.chat import FALLBACK_TEMPLATE, chat_template_for, render_chat
from demo_model import demo_model
from edgegen.errors import ChatTemplateError, UsageError
from edgegen.gguf_file import GGUFFile

TWO_TURNS = [
    {"role": "system", "content": "You are terse."},
    {"role": "user", "content": "Hi there"},
    {"role": "assistant", "content": "Hello."},
    {"role": "user", "content": "What is 2+2?"},
]

CHATML = """{% for message in messages %}
{% if loop.first and message['role'] != 'system' %}
{{ '<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n' }}
{% endif %}
{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}
{% endfor %}
{% if add_generation_prompt %}
    {{ '<|im_start|>assistant\n' }}
{% endif %}"""

LLAMA2 = (
    "{% if messages[0]['role'] == 'system' %}{% set loop_messages = messages[1:] %}"
    "{% set system_message = messages[0]['content'] %}"
    "{% else %}{% set loop_messages = messages %}{% set system_message = false %}{% endif %}"
    "{% for message in loop_messages %}"
    "{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}"
    "{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}"
    "{% if loop.index0 == 0 and system_message != false %}"
    "{% set content = '<<SYS>>\\n' + system_message + '\\n<</SYS>>\\n\\n' + message['content'] %}"
    "{% else %}{% set content = message['content'] %}{% endif %}"
    "{% if message['role'] == 'user' %}{{ bos_token + '[INST] ' + content.strip() + ' [/INST]' }}"
    "{% elif message['role'] == 'assistant' %}{{ ' '  + content.strip() + ' ' + eos_token }}{% endif %}"
    "{% endfor %}"
)

LLAMA3 = (
    "{% set loop_messages = messages %}{% for message in loop_messages %}"
    "{% set content = '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n'"
    "+ message['content'] | trim + '<|eot_id|>' %}"
    "{% if loop.index0 == 0 %}{% set content = bos_token + content %}{% endif %}{{ content }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}{% endif %}"
)

# Tools as JSON (tojson must not HTML-escape), namespace, loop controls, tool-call messages.
TOOLS = """{% set ns = namespace(n_users=0) %}
{% if tools %}<tools>{{ tools | tojson }}</tools>
{% endif %}
{% for message in messages %}
    {% if message.role == 'user' %}{% set ns.n_users = ns.n_users + 1 %}{% endif %}
    {% if message.role == 'system' and not loop.first %}{% continue %}{% endif %}
    {% if message.tool_calls %}
[{{ message.role }} calls] {% for call in message.tool_calls %}{{ call | tojson }}{% endfor %}
    {% else %}
[{{ message.role }}] {{ message.content }}
    {% endif %}
    {% if message.content == 'STOP' %}{% break %}{% endif %}
{% endfor %}
users={{ ns.n_users }}{% if add_generation_prompt %} [assistant]{% endif %}"""

TOOL_CHAT = [
    {"role": "user", "content": "Weather in <Zürich> & \"Bern\"?"},
    {"role": "assistant", "content": None,
     "tool_calls": [{"type": "function", "function": {"name": "weather", "arguments": {"city": "Zürich"}}}]},
    {"role": "tool", "content": "<b>12°C</b>"},
    {"role": "system", "content": "skipped: not first"},
    {"role": "user", "content": "STOP"},
    {"role": "user", "content": "never rendered"},
]
TOOL_SPECS = [{"type": "function", "function": {"name": "weather", "description": "<b>bold</b> & 'quoted'",
                                               "parameters": {"type": "object"}}}]


# --- the bundled model --------------------------------------------------------------------------

def test_demo_model_template_renders_two_turns():
    template = chat_template_for(GGUFFile.open(demo_model()).metadata)
    assert "<|im_start|>" in template and template != FALLBACK_TEMPLATE
    assert render_chat(template, TWO_TURNS) == (
        "<|im_start|>system\nYou are terse.<|im_end|>\n"
        "<|im_start|>user\nHi there<|im_end|>\n"
        "<|im_start|>assistant\nHello.<|im_end|>\n"
        "<|im_start|>user\nWhat is 2+2?<|im_end|>\n"
        "<|im_start|>assistant\n")
    assert render_chat(template, TWO_TURNS[:2], add_generation_prompt=False) == (
        "<|im_start|>system\nYou are terse.<|im_end|>\n<|im_start|>user\nHi there<|im_end|>\n")


def test_fallback_is_chatml_when_the_file_has_no_template():
    assert chat_template_for({}) == FALLBACK_TEMPLATE
    assert chat_template_for({"tokenizer.chat_template": "  "}) == FALLBACK_TEMPLATE
    assert render_chat(None, [{"role": "user", "content": "Hi"}]) == (
        "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n")
    assert render_chat(chat_template_for({}), [{"role": "user", "content": "Hi"}], add_generation_prompt=False) == (
        "<|im_start|>user\nHi<|im_end|>\n")


def test_non_string_template_in_metadata_names_the_key():
    with pytest.raises(ChatTemplateError, match=r"tokenizer\.chat_template: expected a string, found int"):
        chat_template_for({"tokenizer.chat_template": 3})


# --- parity with transformers -------------------------------------------------------------------

@pytest.fixture(scope="module")
def hf_tokenizer():
    """A PreTrainedTokenizerFast built locally (no hub) around a three-token word-level tokenizer."""
    transformers = pytest.importorskip("transformers")
    from tokenizers import Tokenizer, models
    backend = Tokenizer(models.WordLevel({"<unk>": 0, "<s>": 1, "</s>": 2}, unk_token="<unk>"))
    return transformers.PreTrainedTokenizerFast(tokenizer_object=backend, bos_token="<s>", eos_token="</s>",
                                                unk_token="<unk>")


def _hf_render(tok, template: str, messages, **kwargs) -> str:
    tok.chat_template = template
    return tok.apply_chat_template(messages, tokenize=False, **kwargs)


@pytest.mark.parametrize("template", [CHATML, LLAMA2, LLAMA3], ids=["chatml", "llama2", "llama3"])
@pytest.mark.parametrize("gen", [True, False])
@pytest.mark.parametrize("messages", [TWO_TURNS, TWO_TURNS[1:], TWO_TURNS[1:2]], ids=["system", "no-system", "one"])
def test_matches_transformers(hf_tokenizer, template, gen, messages):
    ours = render_chat(template, messages, add_generation_prompt=gen, bos_token="<s>", eos_token="</s>")
    assert ours == _hf_render(hf_tokenizer, template, messages, add_generation_prompt=gen)
    assert "What is 2+2?" in ours or len(messages) < 3


def test_matches_transformers_expected_strings(hf_tokenizer):
    llama2 = render_chat(LLAMA2, TWO_TURNS, bos_token="<s>", eos_token="</s>")
    assert llama2 == ("<s>[INST] <<SYS>>\nYou are terse.\n<</SYS>>\n\nHi there [/INST] Hello. </s>"
                      "<s>[INST] What is 2+2? [/INST]")
    llama3 = render_chat(LLAMA3, TWO_TURNS[1:2], bos_token="<|begin_of_text|>")
    assert llama3 == ("<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nHi there<|eot_id|>"
                      "<|start_header_id|>assistant<|end_header_id|>\n\n")


def test_tools_tojson_namespace_loopcontrols_match_transformers(hf_tokenizer):
    ours = render_chat(TOOLS, TOOL_CHAT, tools=TOOL_SPECS)
    assert ours == _hf_render(hf_tokenizer, TOOLS, TOOL_CHAT, tools=TOOL_SPECS, add_generation_prompt=True)
    assert '"<b>bold</b> & \'quoted\'"' in ours and "Zürich" in ours     # not HTML-escaped, not \u-escaped
    assert "skipped" not in ours and "never rendered" not in ours and ours.endswith("users=2 [assistant]")


def test_raise_exception_becomes_chat_template_error(hf_tokenizer):
    jinja2 = pytest.importorskip("jinja2")
    bad_order = [{"role": "user", "content": "a"}, {"role": "user", "content": "b"}]
    with pytest.raises(ChatTemplateError, match="Conversation roles must alternate"):
        render_chat(LLAMA2, bad_order)
    with pytest.raises(jinja2.TemplateError, match="Conversation roles must alternate"):
        _hf_render(hf_tokenizer, LLAMA2, bad_order)


# --- the sandbox --------------------------------------------------------------------------------

INJECTIONS = [
    "{{ ''.__class__.__mro__[1].__subclasses__() }}",
    "{{ cycler.__init__.__globals__.os.popen('id').read() }}",
    "{{ self.__init__.__globals__ }}",
    "{{ namespace.__init__.__globals__ }}",
    "{% for x in ().__class__.__base__.__subclasses__() %}{% endfor %}",
    "{{ messages.append(1) }}",
    "{{ messages[0].update({'role': 'system'}) }}",
    "{{ lipsum.__globals__['os'].popen('id').read() }}",
    "{{ joiner.__init__.__globals__['__builtins__']['eval']('1') }}",
    "{{ raise_exception.__globals__ }}",
    "{{ ''.__class__ }}",
    "{{ '{0.__class__.__mro__}'.format('') }}",
    "{{ 'x' * 10**9 }}",
    "{{ 2 ** 1000000 }}",
    "{% set n = 3 %}{{ n ** 100000 }}",
    "{% for i in range(10**7) %}{% endfor %}",
    "{{ undefined_thing.attribute }}",
    "{% for m in messages %}",
]


@pytest.mark.parametrize("payload", INJECTIONS)
def test_injection_payloads_are_refused(payload):
    with pytest.raises(ChatTemplateError):
        render_chat(payload, [{"role": "user", "content": "hi"}])


def test_code_does_not_run(tmp_path):
    marker = tmp_path / "pwned"
    for payload in (f"{{{{ cycler.__init__.__globals__.os.system('touch {marker}') }}}}",
                    f"{{{{ lipsum.__globals__.os.popen('touch {marker}').read() }}}}",
                    f"{{{{ ''.__class__.__mro__[1].__subclasses__()[0]('touch {marker}') }}}}"):
        with pytest.raises(ChatTemplateError):
            render_chat(payload, [])
    assert not marker.exists()


def test_files_are_not_read(tmp_path):
    secret_file = tmp_path / "secret.txt"
    secret_file.write_text("TOP-SECRET-42")
    for payload in (f"{{% include '{secret_file}' %}}", f"{{% import '{secret_file}' as s %}}",
                    f"{{% extends '{secret_file}' %}}", f"{{{{ open('{secret_file}').read() }}}}"):
        with pytest.raises(ChatTemplateError) as info:
            render_chat(payload, [])
        assert "TOP-SECRET-42" not in str(info.value)


def test_messages_are_not_mutated():
    messages = [{"role": "user", "content": "hi"}]
    with pytest.raises(ChatTemplateError, match="unsafe"):
        render_chat("{{ messages.append({'role': 'x', 'content': 'y'}) }}", messages)
    assert messages == [{"role": "user", "content": "hi"}]


def test_syntax_and_undefined_errors_are_named():
    with pytest.raises(ChatTemplateError, match="syntax error at line 1"):
        render_chat("{% if %}", [])
    with pytest.raises(ChatTemplateError, match="undefined"):
        render_chat("{{ nope.nothing }}", [])
    with pytest.raises(ChatTemplateError, match="TypeError"):
        render_chat("{{ messages[0]['content'] + 1 }}", [{"role": "user", "content": "x"}])
    # An undefined value alone renders as empty text, as in transformers (templates rely on it).
    assert render_chat("[{{ messages[0].tool_calls }}]", [{"role": "user", "content": "x"}]) == "[]"


def test_extra_variables_reach_the_template():
    assert render_chat("{{ date_string }}|{{ tools }}|{{ strftime_now('%Y') | length }}", [],
                       date_string="26 Jul 2024") == "26 Jul 2024|None|4"


# --- message checks -----------------------------------------------------------------------------

@pytest.mark.parametrize("messages, match", [
    ("hello", r"messages: expected a list"),
    ({"role": "user"}, r"messages: expected a list"),
    ([("user", "hi")], r"messages\[0\]: expected a mapping"),
    ([{"role": "user", "content": "a"}, {"content": "b"}], r"messages\[1\]\.role: expected a string, found nothing"),
    ([{"role": 3, "content": "b"}], r"messages\[0\]\.role: expected a string, found int 3"),
    ([{"role": "user"}], r"messages\[0\]\.content: expected a string .* found nothing"),
    ([{"role": "user", "content": ["part"]}], r"messages\[0\]\.content: expected a string .* found list"),
    ([{"role": "user", "content": None, "tool_calls": [{}]}], r"messages\[0\]\.content"),
    ([{"role": "assistant", "content": None}], r"messages\[0\]\.content"),
])
def test_bad_messages_raise_usage_error(messages, match):
    with pytest.raises(UsageError, match=match):
        render_chat(None, messages)


def test_assistant_tool_call_may_have_no_content():
    msgs = [{"role": "assistant", "content": None, "tool_calls": [{"function": {"name": "f"}}]}]
    assert render_chat("{{ messages[0].tool_calls[0].function.name }}", msgs) == "f"
