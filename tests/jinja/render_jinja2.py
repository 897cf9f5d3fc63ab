"""Renders tests/jinja cases with Python jinja2 configured as transformers does.

transformers/utils/chat_template_utils.py (_compile_jinja_template): an
ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True,
extensions=[AssistantTracker, jinja2.ext.loopcontrols]) whose tojson filter is
json.dumps(x, ensure_ascii=False, indent=indent, separators=separators,
sort_keys=sort_keys), with globals raise_exception (raises TemplateError) and
strftime_now. The {% generation %} tag of AssistantTracker is not used here.

    python3 render_jinja2.py IN.json OUT.json   (formats as jinja_render.c)
"""
import json
import sys
from datetime import datetime

try:
    import jinja2
    import jinja2.ext
    from jinja2.exceptions import TemplateError
    from jinja2.sandbox import ImmutableSandboxedEnvironment
except ImportError:
    sys.stderr.write("Python jinja2 is not installed: apt-get install python3-jinja2\n")
    sys.exit(3)


def raise_exception(message):
    raise TemplateError(message)


def tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
    return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)


def strftime_now(fmt):
    return datetime.now().strftime(fmt)


def make_env():
    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True,
                                       extensions=[jinja2.ext.loopcontrols])
    env.filters["tojson"] = tojson
    env.globals["raise_exception"] = raise_exception
    env.globals["strftime_now"] = strftime_now
    return env


def main():
    with open(sys.argv[1], encoding="utf-8") as f:
        inp = json.load(f)
    env = make_env()
    out = {}
    for c in inp["cases"]:
        try:
            t = env.from_string(inp["templates"][c["template"]])
            out[c["id"]] = {"ok": True, "out": t.render(**c["context"])}
        except Exception as e:  # any failure is "an error" for the comparison
            out[c["id"]] = {"ok": False, "error": str(e), "kind": type(e).__name__}
    with open(sys.argv[2], "w", encoding="utf-8") as f:
        json.dump(out, f, ensure_ascii=False)


if __name__ == "__main__":
    main()
