# Reference renderer replicating transformers' _compile_jinja_template (chat_template_utils.py)
import json, sys, datetime
import jinja2
from jinja2.ext import loopcontrols
from jinja2.sandbox import ImmutableSandboxedEnvironment

from jinja2 import nodes
from jinja2.ext import Extension
class AssistantTracker(Extension):
    tags = {"generation"}
    def parse(self, parser):
        lineno = next(parser.stream).lineno
        body = parser.parse_statements(["name:endgeneration"], drop_needle=True)
        return nodes.CallBlock(self.call_method("_generation_support"), [], [], body).set_lineno(lineno)
    @jinja2.pass_eval_context
    def _generation_support(self, context, caller):
        return caller()

def compile_tpl(src):
    def raise_exception(message):
        raise jinja2.exceptions.TemplateError(message)
    def tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
        return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)
    def strftime_now(fmt):
        return datetime.datetime(2024, 7, 26).strftime(fmt)
    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=[AssistantTracker, loopcontrols])
    env.filters["tojson"] = tojson
    env.globals["raise_exception"] = raise_exception
    env.globals["strftime_now"] = strftime_now
    return env.from_string(src)

def render(src, case):
    kw = dict(case.get("kwargs", {}))
    t = compile_tpl(src)
    return t.render(messages=case["messages"], tools=case.get("tools"), documents=case.get("documents"),
                    add_generation_prompt=case.get("add_generation_prompt", False),
                    bos_token="<|begin_of_text|>", eos_token="<|end_of_text|>", **kw)

if __name__ == "__main__":
    import os
    D = os.path.join(os.path.dirname(os.path.abspath(__file__)), "../../../../shared/assets/chat_templates/")
    gold = json.load(open(D + "golden_renders.json"))
    ok = 0
    for c in gold:
        src = open(D + c["template"] + ".jinja").read()
        case = dict(c)
        case["kwargs"] = {k: c[k] for k in c if k == "enable_thinking"}
        out = render(src, case)
        ok += out == c["rendered"]
        if out != c["rendered"]:
            print("MISMATCH", c["template"], c["case"]); print(repr(out)); print(repr(c["rendered"]))
    print("python ref reproduces", ok, "/", len(gold))
