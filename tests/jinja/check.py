"""Chat templates: src/text/jinja.c against the two references, byte for byte.

Every official template in tests/jinja/templates/*.jinja is rendered on every
conversation below, and a set of small probe templates exercises the subset's
semantics (whitespace control, operators, filters, tests, methods, loops,
namespaces, macros, tojson, number printing). Each case is rendered by

  - Python jinja2 as transformers configures it (render_jinja2.py), the engine
    apply_chat_template uses, and
  - @huggingface/jinja, the transformers.js engine (render_ref.mjs),

and by vtok (tests/blocks/jinja_render.c). vtok must match Python exactly, and
must raise where Python raises (for raise_exception, with its message). On the
official templates @huggingface/jinja must agree too; on probes a difference
between the two references is printed (it marks a known @huggingface/jinja
divergence, e.g. it prints True as "true") but is not a failure.

    python3 tests/jinja/check.py --tool build/jinja_render --work build/jinja-check

Needs `npm ci` in tests/jinja and python3-jinja2.
"""
import argparse
import json
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))

# Tokens of each template's tokenizer_config.json.
TOKENS = {
    "llama2_chat": {"bos_token": "<s>", "eos_token": "</s>"},
    "llama3": {"bos_token": "<|begin_of_text|>", "eos_token": "<|eot_id|>"},
    "llama3_1": {"bos_token": "<|begin_of_text|>", "eos_token": "<|eot_id|>"},
    "mistral_v0_1": {"bos_token": "<s>", "eos_token": "</s>"},
    "mistral_v0_3": {"bos_token": "<s>", "eos_token": "</s>"},
    "qwen2": {"bos_token": None, "eos_token": "<|im_end|>"},
    "qwen3": {"bos_token": None, "eos_token": "<|im_end|>"},
    "deepseek_r1": {"bos_token": "<\uff5cbegin\u2581of\u2581sentence\uff5c>",
                    "eos_token": "<\uff5cend\u2581of\u2581sentence\uff5c>"},
}

TRICKY = ("  She said \"hi\" and 'bye'\n\tthen {{ braces }} {% tags %} {# not a comment #}\\n "
          "h\u00e9llo \u4e2d\u6587 \U0001F642 \u2028x\u00a0 ")

TOOLS = [{
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Get the \"current\" weather",
        "parameters": {
            "type": "object",
            "properties": {
                "city": {"type": "string", "description": "City, e.g. Z\u00fcrich"},
                "days": {"type": "integer", "minimum": 1, "maximum": 7, "default": 3},
                "scale": {"type": "number", "default": 0.5},
                "units": {"type": "string", "enum": ["c", "f"]},
                "verbose": {"type": "boolean", "default": False},
                "extra": {"type": "null", "default": None},
            },
            "required": ["city"],
        },
        "return": {"type": "string", "description": "A report"},
    },
}]


def conversations():
    u = {"role": "user", "content": "Hello, how are you?"}
    a = {"role": "assistant", "content": "I'm doing great. How can I help you today?"}
    u2 = {"role": "user", "content": "Describe <image> please."}
    s = {"role": "system", "content": "You are a friendly chatbot who always responds in the style of a pirate"}
    return {
        "single_user_gen": {"messages": [u], "add_generation_prompt": True},
        "single_user_nogen": {"messages": [u], "add_generation_prompt": False},
        "system_multi_gen": {"messages": [s, u, a, u2], "add_generation_prompt": True},
        "system_multi_nogen": {"messages": [s, u, a, u2], "add_generation_prompt": False},
        "multi_ends_assistant": {"messages": [u, a, u2, a], "add_generation_prompt": False},
        "no_gen_flag": {"messages": [s, u]},
        "tricky_content": {"messages": [{"role": "system", "content": TRICKY},
                                        {"role": "user", "content": TRICKY},
                                        {"role": "assistant", "content": TRICKY},
                                        {"role": "user", "content": "\n\n  padded  \n\n"}],
                           "add_generation_prompt": True},
        "alternation_error": {"messages": [u, u2], "add_generation_prompt": True},
        "assistant_first": {"messages": [a, u], "add_generation_prompt": True},
        "empty_content": {"messages": [{"role": "user", "content": ""}], "add_generation_prompt": True},
        "thinking": {"messages": [u, {"role": "assistant",
                                      "content": "<think>\nThe user greets.\n</think>\n\nHi there!"},
                                  u2], "add_generation_prompt": True},
        "thinking_last": {"messages": [u, {"role": "assistant",
                                           "content": "<think>\nPlan.\n</think>\n\nAnswer."}],
                          "add_generation_prompt": False},
        "enable_thinking_false": {"messages": [u], "add_generation_prompt": True, "enable_thinking": False},
        "tools": {"messages": [s, u], "add_generation_prompt": True, "tools": TOOLS},
        "tools_no_system": {"messages": [u], "add_generation_prompt": True, "tools": TOOLS},
        "tools_in_system_prompt": {"messages": [s, u], "add_generation_prompt": True, "tools": TOOLS,
                                   "tools_in_user_message": False, "date_string": "04 Dec 2026"},
        "builtin_tools": {"messages": [s, u], "add_generation_prompt": True, "tools": TOOLS,
                          "builtin_tools": ["brave_search", "code_interpreter", "wolfram_alpha"]},
        "tool_call_string_args": {"messages": [
            {"role": "system", "content": "S1"}, {"role": "system", "content": "S2"}, u,
            {"role": "assistant", "content": None,
             "tool_calls": [{"id": "call12345", "type": "function",
                             "function": {"name": "get_weather", "arguments": "{\"city\": \"Paris\"}"}},
                            {"id": "call67890", "type": "function",
                             "function": {"name": "get_time", "arguments": "{}"}}]},
            {"role": "tool", "tool_call_id": "call12345", "content": "21C"},
            {"role": "tool", "tool_call_id": "call67890", "content": "noon"},
        ], "add_generation_prompt": True},
        "tool_call_roundtrip": {"messages": [
            u,
            {"role": "assistant", "content": "",
             "tool_calls": [{"id": "call12345", "type": "function",
                             "function": {"name": "get_weather",
                                          "arguments": {"city": "Paris", "days": 2}}}]},
            {"role": "tool", "tool_call_id": "call12345", "name": "get_weather",
             "content": "{\"temp\": 21}"},
        ], "add_generation_prompt": True, "tools": TOOLS},
    }


PROBES = {
    "ws_lstrip_trim": "  {% if t %}\n  yes\n  {% endif %}\nafter\n    {# c #}\n  x\n",
    "ws_minus": "a  {%- if t -%}  b  {%- endif -%}  c {{- ' d ' -}} e\n\n{{ 'f' }}  \n",
    "ws_plus": "  {%+ if t %}x{% endif +%}\nnext\n  {% if t %}y{% endif %}  \n  z",
    "ws_var_no_trim": "{{ n }}\n{{ n }}\n  {{ n }}",
    "ws_for_lines": "{% for i in l %}\n  - {{ i }}\n{% endfor %}\ndone\n",
    "ws_crlf_text": "a\r\nb {% if t %}\r\nc{% endif %}",
    "arith": "{{ 7 // 2 }} {{ -7 // 2 }} {{ 7 % 3 }} {{ -7 % 3 }} {{ 7 % -3 }} {{ 2 ** 10 }} {{ 7 / 2 }} "
             "{{ 1 + 2 * 3 - 4 }} {{ (1 + 2) * 3 }} {{ -n }} {{ n - -1 }} {{ 5.5 // 2 }} {{ -5.5 % 2 }}",
    "floats": "{{ f }} {{ 0.1 + 0.2 }} {{ 1e20 }} {{ 1.5e-7 }} {{ 3.0 }} {{ 10 / 4 }} {{ 2 ** -1 }} "
              "{{ 1e16 }} {{ 123456789.125 }} {{ 0.0001 }} {{ 1 / 3 }} {{ -0.0 }} {{ 2.5e-5 }}",
    "concat": "{{ 'a' ~ 1 ~ none ~ t ~ nope ~ f }}|{{ 'x' + 'y' }}|{{ l + [9] }}|{{ 'ab' * 3 }}|{{ [0] * 2 }}",
    "print_values": "{{ t }} {{ none }} {{ l }} {{ d }} {{ (1, 'a') }} {{ ['it\\'s', \"q\\\"\", 'n\\n'] }} {{ e }}.",
    "slices": "{{ l[::-1] }} {{ l[1:] }} {{ l[:-1] }} {{ u[1:4] }} {{ u[::-1] }} {{ l[-1] }} {{ u[-2] }} "
              "{{ s[::2] }} {{ l[5:] }} {{ l[-10:2] }} {{ u[2] }} {{ l[1:3:-1] }} {{ l[3:0:-2] }}",
    "filters_str": "{{ s|trim }}|{{ s|upper }}|{{ s|lower }}|{{ s|length }}|{{ u|length }}|{{ s|trim('! ') }}|"
                   "{{ 'hello world-foo (bar) it\\'s'|title }}|{{ 'hELLO wORLD'|capitalize }}|"
                   "{{ s|replace('l', 'L') }}|{{ s|replace('l', '', 2) }}|{{ n|string }}|{{ 'x'|safe }}",
    "filters_seq": "{{ l|length }}|{{ d|length }}|{{ l|join(', ') }}|{{ l|join }}|{{ l|first }}|{{ l|last }}|"
                   "{{ l|reverse|list }}|{{ 'abc'|reverse }}|{{ 'abc'|list }}|{{ d|list }}|{{ l|min if false }}"
                   "{{ msgs|map(attribute='role')|join('/') }}|{{ [1, 2, 3, 4]|select('odd')|list }}|"
                   "{{ [1, 2, 3, 4]|reject('even')|list }}|{{ [-1, 0, 2]|map('abs')|list }}",
    "filters_default": "{{ nope|default('dflt') }}|{{ e|default('x', true) }}|{{ e|default('x') }}|"
                       "{{ nope|d('y') }}|{{ none|default('z') }}|{{ nope|length }}",
    "filters_num": "{{ '42'|int }} {{ ' 7 '|int }} {{ 'x'|int }} {{ 'x'|int(5) }} {{ 3.9|int }} {{ '2.5'|float }} "
                   "{{ 3|float }} {{ -3|abs }} {{ -2.5|abs }} {{ '3.5'|int }} {{ true|int }}",
    "tojson": "{{ d|tojson }}|{{ d|tojson(indent=2) }}|{{ l|tojson(indent=4) }}|{{ []|tojson(indent=2) }}|"
              "{{ {}|tojson }}|{{ u|tojson }}|{{ f|tojson }}|{{ [1.5, 2, true, none, 'x']|tojson }}|"
              "{{ {'q': 'a\"b\\\\c', 'nl': '\\n\\t\\r', 'ctl': '\\x01\\x1f\\x7f', 'e': ''}|tojson }}|"
              "{{ msgs|tojson }}|{{ {'a': {'b': []}, 'c': {}}|tojson(indent=1) }}|{{ 'x'|tojson(2) }}",
    "tojson_args": "{{ d|tojson(sort_keys=true) }}|{{ u|tojson(ensure_ascii=true) }}|"
                   "{{ '\U0001F642\x7f'|tojson(ensure_ascii=true) }}|{{ d|tojson(separators=(',', ':')) }}|"
                   "{{ d|tojson(indent=2, separators=(', ', ' = ')) }}|{{ {'b': 1, 'a': {'d': 2, 'c': 3}}|tojson(indent=0, sort_keys=true) }}|"
                   "{{ {1: 'i', 2.5: 'f', true: 'b', none: 'n'}|tojson }}|{{ l|tojson(none, 2) }}|{{ u|tojson(4) }}",
    "items": "{% for k, v in d|items %}{{ k }}={{ v|tojson }};{% endfor %}"
             "{% for k, v in d.items() %}{{ k }}{% endfor %}{% for k in d %}{{ k }}{% endfor %}"
             "{{ d.keys()|list }}{{ d.values()|list|length }}",
    "dict_access": "{{ d.get('b') }}|{{ d.get('zz', 'dflt') }}|{{ d.get('zz') }}|{{ d['a'][2]['x'] }}|"
                   "{{ d.a[1] }}|{{ d['missing'] is defined }}|{{ d.missing }}|{{ msgs[0].role }}|"
                   "{{ msgs[-1]['content'] }}|{{ l[10] is defined }}",
    "str_methods": "{{ s.strip() }}|{{ s.lstrip() }}|{{ s.rstrip() }}|{{ s.split(',') }}|{{ s.split() }}|"
                   "{{ s.replace('l', 'L') }}|{{ s.startswith(' H') }}|{{ s.endswith('d ') }}|"
                   "{{ 'a-b-c'.split('-', 1) }}|{{ s.strip(' H') }}|{{ s.upper() }}|{{ s.lower() }}|"
                   "{{ 'x,y'.split(',')[-1] }}|{{ s.startswith(('x', ' H')) }}|{{ '  a  b  '.split() }}|"
                   "{{ ', '.join(['a', 'b']) }}|{{ s.find('l') }}|{{ s.count('l') }}|{{ 'ab'.title() }}|"
                   "{{ u.strip() }}|{{ '\\n\\nx\\n'.strip('\\n') }}|{{ 'a  b c'.split(' ') }}|"
                   "{{ 'a b c d'.split(none, 2) }}|{{ '  lead'.split(none, 1) }}|{{ 'aaa'.replace('a', 'b', 2) }}",
    "tests": "{{ nope is defined }}{{ n is defined }}{{ none is none }}{{ s is string }}{{ d is mapping }}"
             "{{ l is iterable }}{{ s is iterable }}{{ n is iterable }}{{ n is number }}{{ nope is undefined }}"
             "{{ n is odd }}{{ n is even }}{{ n is divisibleby 7 }}{{ n is divisibleby(3) }}"
             "{{ s is not string }}{{ t is true }}{{ t is boolean }}{{ f is float }}{{ n is integer }}"
             "{{ 'x' is in 'xyz' }}{{ n is eq 7 }}{{ n is equalto(8) }}{{ 'ab' is lower }}{{ l is sequence }}"
             "{{ nope is iterable }}{{ none is mapping }}{{ msgs is iterable }}",
    "logic": "{{ 'y' if t else 'n' }}|{{ 'y' if nope }}|{{ n > 3 and n < 10 }}|{{ not t or n }}|"
             "{{ t and 'x' }}|{{ e or 'fallback' }}|{{ not nope }}|{{ 'ell' in s }}|{{ 'x' not in s }}|"
             "{{ 'b' in d }}|{{ 3 in l }}|{{ 'abc' < 'abd' }}|{{ [1, 2] == [1, 2] }}|{{ 1 == 1.0 }}|"
             "{{ t == 1 }}|{{ none == none }}|{{ nope == nope }}|{{ 'a' != 'a' }}|{{ n >= 7 }}|{{ 2 <= 1 }}|"
             "{{ d == {'b': 1, 'a': [1, 2, {'x': none}]} }}|{{ 'a' == 1 }}|{{ 0 == false }}",
    "if_chain": "{% for x in [1, 'a', none, [], {}, 0, 2.5] %}{% if x is none %}N{% elif x is string %}S"
                "{% elif x is mapping %}M{% elif x in [1, 2] %}I{% elif x %}T{% else %}F{% endif %}{% endfor %}",
    "loop_vars": "{% for x in l %}{{ loop.index0 }}{{ loop.index }}{{ loop.first }}{{ loop.last }}"
                 "{{ loop.revindex }}{{ loop.revindex0 }}{{ loop.length }}|{% endfor %}"
                 "{% for x in l %}{{ loop.previtem is defined }}{{ loop.nextitem|default('-') }}{% endfor %}",
    "loop_filter_else": "{% for x in l if x > 1 %}{{ x }}{{ loop.index }}/{{ loop.length }} {% else %}empty"
                        "{% endfor %}{% for x in [] %}{% else %}E{% endfor %}{% for x in l if x > 9 %}"
                        "{% else %}none{% endfor %}",
    "loop_nested": "{% for a in [1, 2] %}{% for b in 'xy' %}{{ a }}{{ b }}{{ loop.index }}"
                   "{% endfor %}{{ loop.index }};{% endfor %}",
    "loop_controls": "{% for x in range(10) %}{% if x == 2 %}{% continue %}{% endif %}{% if x == 5 %}"
                     "{% break %}{% endif %}{{ x }}{% endfor %}|{{ range(3)|list }}|{{ range(1, 10, 3)|list }}|"
                     "{{ range(5, 0, -2)|list }}",
    "scoping": "{% set x = 1 %}{% for i in l %}{% set x = i %}{% set y = i %}{% endfor %}{{ x }}{{ y }}"
               "{% if t %}{% set z = 5 %}{% endif %}{{ z }}",
    "namespace": "{% set ns = namespace(c=0, last='', flag=false) %}{% for x in l %}{% set ns.c = ns.c + x %}"
                 "{% set ns.last = loop.index ~ '/' ~ loop.length %}{% if x == 1 %}{% set ns.flag = true %}"
                 "{% endif %}{% endfor %}{{ ns.c }} {{ ns.last }} {{ ns.flag }} {{ ns.missing is defined }}",
    "macros": "{% macro greet(name, punct='!') %}Hi {{ name }}{{ punct }}{% endmacro %}"
              "{{ greet('a') }} {{ greet('b', punct='?') }} {{ greet(name='c') }} {{ greet() }}|"
              "{% macro rec(k) %}{% if k > 0 %}{{ k }}{{ rec(k - 1) }}{% endif %}{% endmacro %}{{ rec(4) }}"
              "{% macro outer() %}[{{ n }}]{% endmacro %}{{ outer() }}",
    "set_block": "{% set x %}  inner {{ n }} {% endset %}[{{ x }}]{% set y = 1, 2 %}{{ y }}",
    "literals": "{{ \"dq\" 'sq' }}|{{ 'esc\\t\\'\\\\' }}|{{ '\\u00e9\\x41' }}|{{ 1_000 }}|{{ 0.5 }}|{{ True }}"
                "{{ False }}{{ None }}|{{ {'k': [1, {'z': 2}]}['k'][1].z }}|{{ [1, 2,] }}|{{ (1,) }}|{{ () }}",
    "concat_binds_tighter": "{{ 1 + 2 ~ 3 }}",
    "operators_mixed": "{{ (1 + 2) ~ 3 }}|{{ 1 ~ 2 * 3 }}|{{ l|length - 1 }}|{{ -l|length }}|{{ not 1 == 2 }}|{{ 2 * 3 ** 2 }}|"
                       "{{ 10 - 2 - 3 }}|{{ 2 ** 3 ** 2 }}|{{ 'a' ~ 2 * 3 }}|{{ (msgs|length - 1) - 0 }}",
    "undefined_behaviour": "[{{ nope }}][{{ nope|trim }}][{% for x in nope %}{{ x }}{% endfor %}]"
                           "[{{ nope is none }}][{{ nope ~ 'x' }}][{% if nope %}T{% else %}F{% endif %}]",
    "raise_custom": "{% if n > 5 %}{{ raise_exception('Too many: ' ~ n) }}{% endif %}unreached",
    "undefined_attr_error": "{{ nope.attr }}",
    "undefined_plus_error": "{{ nope + 'x' }}",
    "type_error": "{{ 'a' + 1 }}",
    "strftime": "{{ strftime_now('%Y')|length }}",
    "loop_carry": "{% for i in [1, 2, 3] %}{% if i > 1 %}[{{ v }}]{% endif %}{% set v = i %}{% endfor %}[{{ v }}]",
    "outer_read_in_loop": "{% set c = 'out' %}{% for i in [1, 2] %}{{ c }}{% set c = i %}{% endfor %}{{ c }}",
    "none_attr": "[{{ none_var.x }}][{{ none_var['y'] is defined }}][{{ d.b.c }}]",
    "nested_ns_and_macro": "{% set ns = namespace(items=[]) %}{% for m in msgs %}"
                           "{% set ns.items = ns.items + [m.role|upper] %}{% endfor %}{{ ns.items|join(',') }}"
                           "{% macro row(m, i) -%}\n  {{ i }}: {{ m.content }}\n{%- endmacro %}"
                           "{% for m in msgs %}{{ row(m, loop.index) }}{% endfor %}",
    "string_escapes_out": "{{ 'tab\\there' }}|{{ \"a\\\\b\" }}|{{ 'x\\ny' }}|{{ '\\u4e2d' }}",
    "unicode_ops": "{{ u|length }}|{{ u[0] }}{{ u[-1] }}|{{ u.split(' ') }}|{{ '\u00e9' in u }}|{{ u|tojson }}|"
                   "{{ u.startswith('h\u00e9') }}|{{ u|reverse }}|{{ u.find('w') }}|{{ u.replace('\u00f6', 'o') }}",
    "repr_unicode": "{{ [u, '\u00a0\u2028\u200b\x85\xad\ufeff\U0001F642 \u00e9', \"it's\", '\\\\'] }}|"
                    "{{ {'k\u3000': 'v\x01'} }}",
    "sort": "{{ [3, 1, 2]|sort }}|{{ ['b', 'A', 'a', 'C']|sort }}|{{ ['b', 'A', 'a', 'C']|sort(case_sensitive=true) }}|"
            "{{ [3, 1, 2]|sort(reverse=true) }}|{{ msgs|sort(attribute='content')|map(attribute='content')|join(',') }}|"
            "{{ [2.5, 1, true]|sort }}",
    "indent": "[{{ 'a\\nb\\n\\nc'|indent }}][{{ 'a\\nb\\n'|indent(2, true) }}][{{ 'x\\n\\ny'|indent(1, blank=true) }}]"
              "[{{ ''|indent }}][{{ 'one'|indent(first=true) }}][{{ 'a\\r\\nb\\rc'|indent('--') }}][{{ '\\n'|indent(3, true, true) }}]",
    "comments": "a{# one #}b{#- two -#}  c  {# three\nlines #}\nd",
}

PROBE_CONTEXT = {
    "s": " Hello, World ", "n": 7, "f": 2.5, "l": [3, 1, 2], "t": True, "e": "", "none_var": None,
    "d": {"b": 1, "a": [1, 2, {"x": None}]},
    "u": "h\u00e9llo w\u00f6rld \u4e2d\u6587",
    "msgs": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"},
             {"role": "user", "content": "Bye"}],
}


# Official-template cases where @huggingface/jinja itself falls short of
# Python; vtok is still held to Python there.
NODE_KNOWN = {
    "llama3_1/builtin_tools": "@huggingface/jinja 0.5.13 has no 'reject' filter",
    "deepseek_r1/tool_call_roundtrip": "@huggingface/jinja adds a str and a dict ('[object Map]') "
                                       "where Python raises TypeError",
    "llama3/tool_call_string_args": "@huggingface/jinja cannot trim None (content null); "
                                    "Python prints 'None'",
}


def build_input():
    templates, cases = {}, []
    tdir = os.path.join(HERE, "templates")
    names = sorted(f[:-6] for f in os.listdir(tdir) if f.endswith(".jinja"))
    for name in names:
        with open(os.path.join(tdir, name + ".jinja"), encoding="utf-8") as f:
            templates[name] = f.read()
        for conv, ctx in conversations().items():
            c = dict(TOKENS.get(name, {}))
            c.update(ctx)
            cases.append({"id": f"{name}/{conv}", "template": name, "context": c, "strict": True})
    for name, src in PROBES.items():
        templates["probe_" + name] = src
        cases.append({"id": "probe/" + name, "template": "probe_" + name, "context": PROBE_CONTEXT,
                      "strict": False})
    return {"templates": templates, "cases": cases}


def run(cmd, what):
    try:
        p = subprocess.run(cmd, capture_output=True, text=True)
    except OSError as e:
        sys.exit(f"FAIL: cannot run {what} ({cmd[0]}): {e}")
    if p.returncode != 0:
        sys.stderr.write(p.stderr)
        if p.returncode == 3:
            sys.exit(f"FAIL: the {what} reference is missing (see the message above)")
        sys.exit(f"FAIL: {what} exited with {p.returncode}")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--tool", required=True)
    ap.add_argument("--work", required=True)
    ap.add_argument("--node", default="node")
    args = ap.parse_args()
    if not os.path.isdir(os.path.join(HERE, "node_modules", "@huggingface", "jinja")):
        sys.exit("FAIL: tests/jinja/node_modules is missing: run `npm ci` in tests/jinja")
    os.makedirs(args.work, exist_ok=True)
    inp = build_input()
    paths = {k: os.path.join(args.work, k + ".json") for k in ("input", "python", "node", "vtok")}
    with open(paths["input"], "w", encoding="utf-8") as f:
        json.dump(inp, f, ensure_ascii=False)
    run([sys.executable, os.path.join(HERE, "render_jinja2.py"), paths["input"], paths["python"]], "Python jinja2")
    run([args.node, os.path.join(HERE, "render_ref.mjs"), paths["input"], paths["node"]], "@huggingface/jinja")
    run([args.tool, "render", paths["input"], paths["vtok"]], "jinja_render")
    res = {}
    for k in ("python", "node", "vtok"):
        with open(paths[k], encoding="utf-8") as f:
            res[k] = json.load(f)

    fails, diverge, n_ok, n_err = [], [], 0, 0
    for c in inp["cases"]:
        cid = c["id"]
        py, js, vt = res["python"][cid], res["node"][cid], res["vtok"][cid]
        if py["ok"]:
            if not vt["ok"]:
                fails.append(f"{cid}: Python renders, vtok fails: {vt['error']}")
            elif vt["out"] != py["out"]:
                fails.append(f"{cid}: differs from Python\n    python: {py['out']!r}\n    vtok:   {vt['out']!r}")
            else:
                n_ok += 1
        else:
            if vt["ok"]:
                fails.append(f"{cid}: Python fails ({py['kind']}: {py['error']}), vtok renders {vt['out']!r}")
            elif py["kind"] == "TemplateError" and py["error"] not in vt["error"]:
                fails.append(f"{cid}: raise_exception message {py['error']!r} not in {vt['error']!r}")
            else:
                n_err += 1
        same_refs = (py["ok"] == js["ok"]) and (not py["ok"] or py["out"] == js["out"])
        if not same_refs:
            msg = (f"{cid}: @huggingface/jinja differs from Python: "
                   f"{js.get('out', js.get('error'))!r} vs {py.get('out', py.get('error'))!r}")
            strict = c["strict"] and cid not in NODE_KNOWN
            (fails if strict else diverge).append(msg + (f" [{NODE_KNOWN[cid]}]" if cid in NODE_KNOWN else ""))
    for d in diverge:
        print("note (reference divergence, not a failure):", d)
    for f in fails:
        print("FAIL", f)
    total = len(inp["cases"])
    print(f"jinja: {total} cases, {n_ok} rendered identically, {n_err} failed as the reference does, "
          f"{len(fails)} failures, {len(diverge)} @huggingface/jinja divergences on probes")
    sys.exit(1 if fails else 0)


if __name__ == "__main__":
    main()
