#!/usr/bin/env python3
"""Records chat-template renderings by transformers (its own Jinja environment and render path)
as fixtures for the C++ engine's tests, so CI needs no Python.

  /work/venv/bin/python tools/template_make_fixtures.py [TESTDATA_DIR]

Writes tests/fixtures/templates/renderings.json (every testdata template x several chats, tools
and tool calls included) and tests/fixtures/templates/snippets.json (small templates exercising
one feature each). A case either has "expected" (the exact text) or "error" (transformers raised;
for raise_exception the message)."""
import copy
import hashlib
import json
import os
import sys

import jinja2
import transformers
from transformers.utils.chat_template_utils import _compile_jinja_template, render_jinja_template

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TESTDATA = sys.argv[1] if len(sys.argv) > 1 else os.path.join(ROOT, "..", "shared", "testdata")
OUT = os.path.join(ROOT, "tests", "fixtures", "templates")

WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_current_weather",
        "description": "Get the current weather in a given location",
        "parameters": {
            "type": "object",
            "properties": {
                "location": {"type": "string", "description": "The city and state, e.g. San Francisco, CA"},
                "unit": {"type": "string", "enum": ["celsius", "fahrenheit"], "description": "Temperature unit"},
                "days": {"type": "integer", "description": "Forecast days", "minimum": 1, "maximum": 7},
                "hourly": {"type": ["boolean", "null"], "description": "Hourly detail"},
                "tags": {"type": "array", "items": {"type": "string"}, "description": "Labels"},
                "extra": {"type": "object", "additionalProperties": {"type": "number"}, "description": "Extra"},
            },
            "required": ["location"],
        },
    },
}
SEARCH_TOOL = {
    "type": "function",
    "function": {
        "name": "web_search",
        "description": "Search the web — returns snippets (ünïcödé)",
        "parameters": {
            "type": "object",
            "properties": {"query": {"type": "string", "description": "What to search for"}},
            "required": ["query"],
        },
    },
}


def tool_chat(arguments_as_string):
    args = {"location": "Paris, France", "unit": "celsius"}
    arguments = json.dumps(args) if arguments_as_string else args
    return [
        {"role": "system", "content": "You are a weather bot. Use tools when needed."},
        {"role": "user", "content": "What's the weather like in Paris?"},
        {
            "role": "assistant",
            "content": "",
            "tool_calls": [
                {"id": "call_1", "type": "function", "function": {"name": "get_current_weather", "arguments": arguments}}
            ],
        },
        {"role": "tool", "tool_call_id": "call_1", "name": "get_current_weather", "content": '{"temperature": 22, "sky": "sunny"}'},
        {"role": "assistant", "content": "It is 22 °C and sunny in Paris."},
        {"role": "user", "content": "Thanks!  And tomorrow?\n"},
    ]


def chats(conversation):
    plain = conversation["messages"]
    no_system = plain[1:]
    return {
        "plain": (plain, None),
        "no_system": (no_system, None),
        "single_user": ([{"role": "user", "content": "  Hi there  \n"}], None),
        "tools": (plain, [WEATHER_TOOL, SEARCH_TOOL]),
        "tool_calls": (tool_chat(False), [WEATHER_TOOL]),
        "tool_calls_string_args": (tool_chat(True), [WEATHER_TOOL, SEARCH_TOOL]),
    }


def render_case(source, messages, tools, kwargs, add_generation_prompt):
    """Returns (context the template sees, expected text or None, error or None)."""
    messages = copy.deepcopy(messages)
    # render_jinja_template passes these exact variables to the template.
    context = {"messages": messages, "tools": tools, "documents": None, "add_generation_prompt": add_generation_prompt}
    context.update(kwargs)
    try:
        rendered, _ = render_jinja_template(
            conversations=[messages], tools=tools, chat_template=source, add_generation_prompt=add_generation_prompt, **kwargs
        )
        return context, rendered[0], None
    except jinja2.exceptions.TemplateError as e:
        return context, None, str(e)
    except Exception as e:  # TypeError and friends inside the template
        return context, None, f"{type(e).__name__}: {e}"


def renderings():
    folder = os.path.join(TESTDATA, "templates")
    conversation = json.load(open(os.path.join(folder, "expected", "conversation.json")))
    seen = set()
    contexts, cases = {}, []
    for name in sorted(os.listdir(folder)):
        if not name.endswith(".jinja"):
            continue
        source = open(os.path.join(folder, name), encoding="utf-8").read()
        digest = hashlib.sha256(source.encode()).hexdigest()
        if digest in seen:  # byte-identical copies (README lists them)
            continue
        seen.add(digest)
        kwargs = {"date_string": "26 Jul 2024"}
        if name in conversation["bos_token"]:
            kwargs["bos_token"] = conversation["bos_token"][name]
        if name in conversation["eos_token"]:
            kwargs["eos_token"] = conversation["eos_token"][name]
        for chat_name, (messages, tools) in chats(conversation).items():
            for gen in (True, False):
                context, expected, error = render_case(source, messages, tools, kwargs, gen)
                key = hashlib.sha256(json.dumps(context, sort_keys=True).encode()).hexdigest()[:12]
                contexts[key] = context
                case = {"template": name, "chat": chat_name, "add_generation_prompt": gen, "context": key}
                if error is None:
                    case["expected"] = expected
                else:
                    case["error"] = error
                cases.append(case)
    return {"contexts": contexts, "cases": cases}


SNIPPET_CONTEXT = {
    "messages": [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Hi, ünïcödé ☃ \"quotes\" and 'apostrophes'"},
        {"role": "assistant", "content": "Hello!", "tool_calls": [{"function": {"name": "f", "arguments": {"a": 1, "b": [1, 2.5, None, True]}}}]},
    ],
    "items": [3, 1, 2, 1],
    "words": ["banana", "Apple", "cherry", "apple"],
    "people": [{"name": "Bo", "age": 30, "tags": ["x"]}, {"name": "al", "age": 25}, {"name": "Cy", "age": 35, "admin": True}],
    "d": {"b": 2, "a": 1, "nested": {"k": "v", "list": [1, "two", 3.0]}},
    "s": "  Hello, World! hello  ",
    "n": None,
    "t": True,
    "f": 2.5,
    "i": 7,
    "big": 12345678901234,
    "e": "",
}

SNIPPETS = [
    # printing
    "{{ n }}|{{ t }}|{{ f }}|{{ i }}|{{ items }}|{{ d }}|{{ words }}|{{ (1, 'a') }}|{{ (1,) }}|{{ () }}",
    "{{ 1.0 }}|{{ 0.1 + 0.2 }}|{{ 1e20 }}|{{ 1e-5 }}|{{ 123456789.125 }}|{{ 3 / 2 }}|{{ 4 / 2 }}|{{ -0.0 }}|{{ 1e16 }}|{{ 1e15 }}",
    "{{ messages[1].content }}|{{ messages[1] }}|{{ ['it\\'s', \"say \\\"hi\\\"\", 'both \\' \"'] }}",
    "{{ 'tab\\there\\nnewline\\\\ \\x41\\u00e9' }}|{{ ['\\t\\n\\x00\\x7f\\xa0é'] }}",
    # arithmetic
    "{{ 7 // 2 }}|{{ -7 // 2 }}|{{ 7 % 3 }}|{{ -7 % 3 }}|{{ 7 % -3 }}|{{ 2 ** 10 }}|{{ 2 ** -1 }}|{{ 7.5 // 2 }}|{{ -7.5 % 2 }}|{{ 1 + 2 * 3 - 4 }}",
    "{{ 'ab' * 3 }}|{{ [1] * 3 }}|{{ 3 * 'x' }}|{{ 'a' ~ 1 ~ none ~ true }}|{{ [1, 2] + [3] }}|{{ 'x' + 'y' }}|{{ true + 1 }}|{{ -i }}|{{ +f }}",
    "{{ 'a' + 1 }}",
    "{{ 1 / 0 }}",
    "{{ undefined_thing + 1 }}",
    # comparisons and logic
    "{{ 1 == 1.0 }}|{{ 'a' < 'b' }}|{{ [1, 2] < [1, 3] }}|{{ 1 < 2 < 3 }}|{{ 3 > 2 > 2 }}|{{ 'ell' in 'hello' }}|{{ 2 in items }}|{{ 'a' in d }}|{{ 'z' not in d }}|{{ none == none }}",
    "{{ 0 or 'x' }}|{{ 'a' and 'b' }}|{{ '' and 'b' }}|{{ not 0 }}|{{ not not 1 }}|{{ none or [] or 'last' }}|{{ 1 if t else 2 }}|{{ 1 if n else 2 }}|{{ 'x' if n }}|",
    "{{ 1 < 'a' }}",
    # tests
    "{{ n is none }}|{{ n is not none }}|{{ x is defined }}|{{ d is mapping }}|{{ items is iterable }}|{{ s is string }}|{{ i is number }}|{{ t is number }}|{{ t is boolean }}|{{ i is integer }}|{{ f is float }}|{{ t is integer }}",
    "{{ i is odd }}|{{ i is even }}|{{ 9 is divisibleby 3 }}|{{ 9 is divisibleby(2) }}|{{ 'a' is equalto 'a' }}|{{ 3 is gt 2 }}|{{ 'abc' is lower }}|{{ 'ABC' is upper }}|{{ d is sequence }}|{{ s is iterable }}|{{ i is iterable }}|{{ none is sameas none }}",
    "{{ undefined_var is iterable }}|{{ range is callable }}|{{ 2 is in items }}|{{ t is true }}|{{ t is false }}|{{ 1 is eq 1.0 }}|{{ 1 is ne 2 }}",
    # filters
    "{{ s | trim }}|{{ s | upper }}|{{ s | lower }}|{{ 'hello wORLD-foo(bar' | title }}|{{ 'hELLO world' | capitalize }}|{{ s | length }}|{{ items | length }}|{{ d | length }}|{{ 'ünï' | length }}",
    "{{ items | join(', ') }}|{{ items | join }}|{{ people | join('/', attribute='name') }}|{{ items | first }}|{{ items | last }}|{{ items | reverse | list }}|{{ 'abc' | reverse }}|{{ items | sort }}|{{ items | sort(reverse=true) }}|{{ items | unique | list }}",
    "{{ words | sort }}|{{ words | sort(case_sensitive=true) }}|{{ words | unique | list }}|{{ people | sort(attribute='age') | map(attribute='name') | list }}|{{ words | min }}|{{ words | max }}|{{ items | sum }}|{{ people | sum(attribute='age') }}",
    "{{ people | selectattr('admin') | list }}|{{ people | rejectattr('admin') | map(attribute='name') | join(',') }}|{{ people | selectattr('age', 'gt', 26) | map(attribute='name') | list }}|{{ people | selectattr('name', 'equalto', 'al') | list | length }}|{{ items | select('odd') | list }}|{{ items | reject('odd') | list }}",
    "{{ people | map(attribute='tags') | list }}|{{ people | map(attribute='tags', default='-') | list }}|{{ items | map('string') | join('+') }}|{{ ['1', '2'] | map('int') | sum }}|{{ people | selectattr('tags', 'defined') | list | length }}",
    "{{ d | items | list }}|{{ d.items() | list }}|{{ d.keys() | list }}|{{ d.values() | list }}|{{ d.get('a') }}|{{ d.get('zz') }}|{{ d.get('zz', 5) }}|{{ d | dictsort }}|{{ d['nested']['list'][1] }}|{{ d.nested.k }}",
    "{{ x | default('dflt') }}|{{ e | default('dflt') }}|{{ e | default('dflt', true) }}|{{ n | default('d2') }}|{{ x | d('short') }}|{{ n | string }}|{{ items | string }}|{{ '42' | int + 1 }}|{{ '3.7' | int }}|{{ 'x' | int }}|{{ 'x' | int(5) }}|{{ '2.5' | float }}|{{ 3 | float }}",
    "{{ 2.567 | round }}|{{ 2.567 | round(2) }}|{{ 2.5 | round }}|{{ 3.5 | round }}|{{ 2.1 | round(0, 'ceil') }}|{{ -3 | abs }}|{{ -2.5 | abs }}|{{ 'a-b-c' | replace('-', '+') }}|{{ 'a-b-c' | replace('-', '', 1) }}|{{ '<a href=\"x\">&\\'' | e }}|{{ '<b>' | safe }}",
    "{{ 'line1\\nline2\\n\\nline4' | indent }}|{{ 'line1\\nline2' | indent(2, true) }}|{{ 'a\\n\\nb' | indent(2, blank=true) }}|{{ 'a\\nb' | indent('>>') }}|{{ 'one two  three, four' | wordcount }}|{{ '%s is %d years' | format('Bo', 30) }}",
    "{{ d | tojson }}|{{ messages[2].tool_calls[0].function.arguments | tojson }}|{{ messages[1].content | tojson }}|{{ d | tojson(indent=2) }}|{{ d | tojson(sort_keys=true) }}|{{ items | tojson(separators=(',', ':')) }}|{{ 'ünï' | tojson(ensure_ascii=true) }}|{{ [] | tojson(indent=2) }}|{{ {} | tojson }}|{{ 1.0 | tojson }}|{{ none | tojson }}",
    "{{ d | tojson(indent=4) | indent(4) }}|{{ [[1, [2]], {'a': []}] | tojson(indent=1) }}",
    "{{ x | tojson }}",
    "{{ items | nosuchfilter }}",
    # strings
    "{{ s.strip() }}|{{ s.lstrip() }}|{{ s.rstrip() }}|{{ 'xxhixx'.strip('x') }}|{{ s.upper() }}|{{ s.lower() }}|{{ 'hello world'.title() }}|{{ 'hELLO'.capitalize() }}|{{ s.startswith('  He') }}|{{ s.endswith(('a', '  ')) }}",
    "{{ 'a,b,,c'.split(',') }}|{{ ' a  b c '.split() }}|{{ 'a b c d'.split(' ', 1) }}|{{ 'a,b,c'.rsplit(',', 1) }}|{{ ' a  b c '.split(none, 1) }}|{{ 'a b c'.rsplit(none, 1) }}|{{ 'l1\\nl2\\r\\nl3'.splitlines() }}",
    "{{ s.replace('l', 'L') }}|{{ s.replace('l', 'L', 2) }}|{{ s.find('World') }}|{{ s.find('zz') }}|{{ s.count('l') }}|{{ '{} and {}'.format('a', 1) }}|{{ '{1}{0}{name}'.format('a', 'b', name='c') }}|{{ '-'.join(['a', 'b']) }}|{{ '123'.isdigit() }}|{{ 'abc'.isalpha() }}",
    "{{ 'hello'[1] }}|{{ 'hello'[-1] }}|{{ 'hello'[1:3] }}|{{ 'hello'[::-1] }}|{{ 'hello'[::2] }}|{{ items[1:] }}|{{ items[:-1] }}|{{ items[::-1] }}|{{ items[-2:] }}|{{ items[10:] }}|{{ items[3:0:-1] }}|{{ 'ünïcödé'[1:4] }}|{{ items[-100:2] }}",
    "{{ items[10] }}|{{ d.zz }}|{{ d['zz'] }}|{{ n.attr }}|{{ 'abc'.nope }}|",
    "{{ d.zz.yy }}",
    "{{ '%s-%s' % ('a', 'b') }}|{{ '%d%%' % 50 }}|{{ '%05.1f' % 3.14159 }}|{{ '%(a)s!' % {'a': 1} }}|{{ '%r' % 'x' }}",
    # statements
    "{% for x in items %}{{ loop.index }}{{ loop.index0 }}{{ loop.first }}{{ loop.last }}{{ loop.length }}{{ loop.revindex }}{{ loop.revindex0 }},{% endfor %}",
    "{% for x in items %}{{ loop.previtem | default('-') }}{{ x }}{{ loop.nextitem | default('-') }} {% endfor %}{% for x in [] %}no{% else %}empty{% endfor %}",
    "{% for k, v in d.items() %}{{ k }}={{ v }};{% endfor %}|{% for k in d %}{{ k }}{% endfor %}|{% for c in 'abc' %}{{ c }}.{% endfor %}|{% for a, b in [(1, 2), (3, 4)] %}{{ a + b }}{% endfor %}",
    "{% for x in items if x > 1 %}{{ x }}{{ loop.index }}{{ loop.length }},{% endfor %}|{% for x in items %}{% if x == 2 %}{% break %}{% endif %}{{ x }}{% endfor %}|{% for x in items %}{% if x == 1 %}{% continue %}{% endif %}{{ x }}{% endfor %}",
    "{% for x in items %}{{ loop.cycle('a', 'b') }}{% endfor %}|{% for p in people %}{% for t in p.tags | default([]) %}{{ p.name }}:{{ t }}:{{ loop.index }}{% endfor %}{% endfor %}",
    "{% set x = 1 %}{% for i in range(3) %}{% set x = x + i %}{{ x }}{% endfor %}{{ x }}|{% set ns = namespace(total=0, seen=[]) %}{% for i in range(4) %}{% set ns.total = ns.total + i %}{% set ns.seen = ns.seen + [i] %}{% endfor %}{{ ns.total }}{{ ns.seen }}",
    "{{ range(3) | list }}|{{ range(1, 7, 2) | list }}|{{ range(5, 0, -2) | list }}|{{ range(0) | list }}|{% set a, b = 1, 2 %}{{ a }}{{ b }}|{% set t = 1, 2 %}{{ t }}",
    "{% if i > 10 %}big{% elif i > 5 %}mid{% else %}small{% endif %}|{% if n %}x{% elif not n %}y{% endif %}|{% if items %}{% if d.a == 1 %}deep{% endif %}{% endif %}",
    "{% macro greet(name, greeting='Hello', punct='!') %}{{ greeting }}, {{ name }}{{ punct }}{% endmacro %}{{ greet('Bo') }}|{{ greet('Al', 'Hi') }}|{{ greet(punct='?', name='Cy') }}|{{ greet('x') | upper }}|{{ greet('a') ~ greet('b') }}",
    "{% macro fact(k) %}{% if k <= 1 %}1{% else %}{{ k * fact(k - 1) | int }}{% endif %}{% endmacro %}{{ fact(5) }}|{% macro later() %}{{ after }}{% endmacro %}{% set after = 'seen' %}{{ later() }}|{% macro va() %}{{ varargs }}{{ kwargs }}{% endmacro %}{{ va(1, 2, k=3) }}",
    "{% macro wrap() %}[{{ caller() }}]{% endmacro %}{% call wrap() %}inside{% endcall %}|{% macro each(xs) %}{% for x in xs %}{{ caller(x) }}{% endfor %}{% endmacro %}{% call(v) each([1, 2]) %}<{{ v }}>{% endcall %}",
    "{% set block %}  captured {{ i }}  {% endset %}[{{ block }}]|{% set trimmed | trim | upper %}  shout  {% endset %}[{{ trimmed }}]|{% filter upper %}filtered {{ s | trim }}{% endfilter %}|{% filter trim %}   x   {% endfilter %}",
    "{% raw %}{{ not rendered }}{% endraw %}|{# a comment #}|{{ '{{' }}|{{ {'a': {'b': 1}} }}|{{ [1, [2, [3]]] }}|{{ dict(a=1, b='x') }}|{{ namespace(a=1).a }}",
    "{{ raise_exception('Custom failure: ' ~ i) }}",
    "{% for m in messages %}{% if m.role == 'user' %}{{ raise_exception('No users allowed') }}{% endif %}{% endfor %}",
    "{% generation %}gen {{ i }}{% endgeneration %}",
    # whitespace control
    "a\n  {% if t %}\n    b\n  {% endif %}\nc\n",
    "a  {%- if t -%}  b  {%- endif -%}  c|{{- '  x  ' -}}|  {{ 'y' }}  |",
    "line1\n    {# comment #}\nline2\n  {%+ if t %}kept-indent{% endif %}\n{% if t +%}\nkept-newline{% endif %}",
    "{% for x in items %}\n  {{ x }}\n{% endfor %}\n",
    "{%- for x in items -%}\n  {{ x }}\n{%- endfor %}\n\n",
    "{{ 'x' }}\n{{ 'y' }}\n",
    "text\r\nwith crlf\r\n{% if t %}\r\nyes\r\n{% endif %}\r\n",
    "  {% raw %}  raw  {% endraw %}  \n  {%- raw -%}  raw2  {%- endraw -%}  \nend",
    # undefined behaviour
    "{{ x }}|{{ x | length }}|{% for y in x %}{{ y }}{% endfor %}|{{ x is defined }}|{{ x == x }}|{{ 'a' ~ x }}|{{ x.y is defined if x is defined else 'guarded' }}",
    "{{ x.y }}",
    "{{ x() }}",
    "{{ n.y }}|{{ n.y is defined }}",
    "{{ items.append(4) }}",
    "{{ d.update({'c': 3}) }}",
    # more edge cases
    "{{ 'abc' | list }}|{{ d | list }}|{{ d | first }}|{{ [] | first }}|{{ [1, 2] | tojson }}|{{ true | tojson }}|{{ 3.0 | int }}|{{ 'a' * 0 }}|{{ items | batch(3) | list }}|{{ 10 | string | length }}",
    "{{ d | dictsort(by='value') }}|{{ items | max }}|{{ [] | max }}|{{ 'x' if false }}|{{ range(3) | reverse | list }}|{{ (1, 2) + (3,) }}|{{ 2 ** 0.5 }}|{{ 1 if true else 2 if false else 3 }}|{{ 0 if false else 2 if false else 3 }}",
    "{{ ('<'|safe) + '<' }}|{{ '<' + ('<'|e) }}|{{ ('%s'|safe) % '<' }}|{{ ('<b>'|safe) ~ '<' }}|{{ ('a'|safe) | upper + '&' }}|{{ ['<'] | join('&' | safe) }}|{{ ('x'|safe).replace('x', '<') + '>' }}",
    "{{ messages[-1].content }}|{{ messages[1:] | map(attribute='role') | join(',') }}|{{ messages | selectattr('role', 'equalto', 'system') | list | length }}|{% if not messages | selectattr('role', 'equalto', 'nobody') | list %}none{% endif %}|{{ messages | map(attribute='role') | first }}",
    "{% set m = items | map('string') %}{{ m | join }}/{{ m | join }}|{% set g = items | select('odd') %}{% if g %}truthy{% endif %}|{{ items | select('odd') | tojson }}",
    "{{ items | map('string') | length }}",
    "{{ 'a' in none }}",
    "{{ 5 // 0 }}",
    "{{ 'a' < none }}",
    "{%- if true %}\n  x{% endif -%}\n y\n{%- for i in range(2) %}\n  - {{ i }}\n{%- endfor %}\n",
    "{% for i in range(2) %}{% for j in range(2) %}{{ loop.index }}{{ i }}{{ j }} {% endfor %}{{ loop.index }};{% endfor %}",
    "{% set outer = 'o' %}{% macro m() %}{% set outer = 'inner' %}{{ outer }}{% endmacro %}{{ m() }}{{ outer }}|{% if true %}{% set leaked = 1 %}{% endif %}{{ leaked }}|{% for i in [1] %}{% set nl = 1 %}{% endfor %}{{ nl is defined }}",
    "{{ '  x  ' | trim('x ') }}|{{ 'xxaxx' | trim('x') }}|{{ '\\u00a0 nbsp \\u00a0' | trim }}|{{ '\\t tab \\n' | trim | length }}",
    "{{ -1 | abs }}|{{ -i }}|{{ - 2 ** 2 }}|{{ (- 2) ** 2 }}|{{ 2 * 3 ** 2 }}|{{ 10 - 2 - 3 }}|{{ 2 ** 3 ** 2 }}|{{ 7 / 2 | int }}|{{ (7 / 2) | int }}|{{ -3 // 2 }}",
    "{{ [1, 'a', none, true, 2.5, [1], {'k': (1, 2)}] }}|{{ [1, 'a', none, true, 2.5, [1], {'k': [1, 2]}] | tojson }}|{{ {'b': 1, 'a': {'d': 1, 'c': 2}} | tojson(sort_keys=true, indent=1) }}",
    "{{ 'é☃😀' | tojson }}|{{ 'é☃😀' | tojson(ensure_ascii=true) }}|{{ '\\x01\\x1f\\x7f' | tojson }}|{{ 'a/b<c>&' | tojson }}|{{ 1e100 | tojson }}|{{ 0.1 | tojson }}|{{ -5 | tojson }}",
    "{{ big }}|{{ big * 1000 }}|{{ big / 7 }}|{{ 1e300 * 1e10 }}|{{ -1e300 * 1e10 }}|{{ 123456789012345678 }}|{{ 0.000123 }}|{{ 1.5e-7 }}|{{ 100.0 }}|{{ 1e22 }}",
    "{{ 'Hello' | replace('', '-') }}|{{ 'aaa'.replace('a', 'b', 2) }}|{{ 'a.b.c'.split('.', -1) }}|{{ 'abc'.startswith('') }}|{{ ''.split(',') }}|{{ ''.split() }}|{{ 'aXbXc'.rsplit('X') }}|{{ 'a b'.split(' ', 0) }}",
    "{{ 'hello world foo'.title() }}|{{ 'hello-world foo_bar'.title() }}|{{ 'hello-world (foo) [bar]' | title }}|{{ \"they're bill's\".title() }}|{{ \"they're\" | title }}|{{ 'ABC def' | capitalize }}",
    "{{ 'x' ~ 1.0 ~ 2 ~ [1] ~ {'a': 1} ~ none ~ false }}|{{ 'x' | string ~ 1 }}|{{ [1, 2] | join(', ') }}|{{ [none, true] | join }}",
    "{% for a, b in {'x': 1, 'y': 2} | items %}{{ a }}{{ b }}{% endfor %}|{% for a, b in d | dictsort %}{{ a }}{% endfor %}|{% for x in d.values() %}{{ x is mapping }}{% endfor %}",
    "{% for x in [1, 2, 3] %}{% if loop.first %}F{% elif loop.last %}L{% else %}M{% endif %}{% endfor %}|{% for x in [] %}{% else %}{{ loop is defined }}{% endfor %}",
    "{% macro m(a, b) %}{{ a }}-{{ b }}{% endmacro %}{{ m(1) }}|{{ m(b=2) }}|{{ m(1, 2) }}",
    "{% macro m(a) %}{{ a }}{% endmacro %}{{ m(1, 2) }}",
    "{% set x %}{% for i in range(3) %}{{ i }}{% endfor %}{% endset %}{{ x | length }}{{ x }}",
    "{{ messages | tojson }}",
    "{{ messages[2].tool_calls | tojson(indent=2) }}",
    "{{ namespace(a=[1]) }}|{% set ns = namespace(x=1) %}{% set ns.y = ns.x + 1 %}{{ ns.y }}{{ ns.x }}{{ ns['x'] }}{{ ns.zz is defined }}",
    "{{ (1, 2) | tojson }}|{{ ((1, 2), 3) }}|{{ [(1, 'a')] | tojson }}",
    "{% if 'content' in messages[0] and messages[0]['content'] is string %}ok{% endif %}|{{ messages[0].content is not string }}",
    "{{ 3 is divisibleby 0 }}",
    "{{ none | tojson }}|{{ none | string }}|{{ none | length }}",
    "{{ none | list }}",
    "{{ i | length }}",
    "{{ 'abc'[5] }}|{{ 'abc'[1:100] }}|{{ 'abc'[-100:] }}|{{ items[::0] }}",
    "{{ 'abc'[None:2] }}|{{ items[::-2] }}|{{ items[1::-1] }}|{{ items[-1:-3:-1] }}",
    "{{ 'Ä ö Ωμέγα Привет Łódź' | upper }}|{{ 'Ä ö Ωμέγα Привет Łódź' | lower }}|{{ 'élan vital' | title }}|{{ 'ÉCOLE' | capitalize }}|{{ 'ÀB'.lower() }}",
    # syntax errors
    "{% if t %}unterminated",
    "{{ 1 + }}",
    "{% for x in %}{% endfor %}",
    "{% endif %}",
    "{{ 'unterminated }}",
    "{% include 'other.jinja' %}",
    "{% unknowntag %}",
]


def snippets():
    cases = []
    for source in SNIPPETS:
        case = {"source": source}
        try:
            case["expected"] = _compile_jinja_template(source).render(**copy.deepcopy(SNIPPET_CONTEXT))
        except jinja2.exceptions.TemplateSyntaxError as e:
            case["error"] = f"syntax: {e}"
        except jinja2.exceptions.TemplateError as e:
            case["error"] = str(e)
        except Exception as e:
            case["error"] = f"{type(e).__name__}: {e}"
        cases.append(case)
    return {"context": SNIPPET_CONTEXT, "cases": cases}


def main():
    os.makedirs(OUT, exist_ok=True)
    header = {"generator": "tools/template_make_fixtures.py", "transformers": transformers.__version__, "jinja2": jinja2.__version__}
    for name, data in (("renderings.json", renderings()), ("snippets.json", snippets())):
        data = {**header, **data}
        with open(os.path.join(OUT, name), "w", encoding="utf-8") as f:
            json.dump(data, f, ensure_ascii=False, indent=1)
            f.write("\n")
        cases = data["cases"]
        errors = sum(1 for c in cases if "error" in c)
        print(f"{name}: {len(cases)} cases, {errors} raise in transformers")


if __name__ == "__main__":
    main()
