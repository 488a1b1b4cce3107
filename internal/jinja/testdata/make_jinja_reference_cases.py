"""Renders 70 chat-template cases with Python Jinja2 and transformers' settings (jinja_reference.py) into
jinja_reference_cases.json, the reference for jinja_test.go. Needs Python with jinja2 and ../shared beside the
repository."""
import json, sys
import os
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from jinja_reference import render
D = os.path.join(os.path.dirname(os.path.abspath(__file__)), "../../../../shared/assets/chat_templates/")
T_ALL = ["Qwen-Qwen3-0.6B", "Qwen-Qwen2.5-7B-Instruct", "Qwen-QwQ-32B", "meta-llama-Llama-3.1-8B-Instruct",
         "meta-llama-Llama-3.2-3B-Instruct", "deepseek-ai-DeepSeek-R1-Distill-Qwen-32B"]
weather = {"type": "function", "function": {"name": "get_weather", "description": "Get the weather <now> & 'later' in “Zürich” 🌧",
    "parameters": {"type": "object", "properties": {"location": {"type": "string", "description": "City, e.g. San Francisco"},
    "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]}, "days": {"type": "integer", "default": 1},
    "ratio": {"type": "number", "default": 1.0}, "x": {"default": None}, "flag": {"default": True}, "empty": {}},
    "required": ["location"]}}}
search = {"type": "function", "function": {"name": "search", "description": "Search the web", "parameters": {"type": "object", "properties": {"q": {"type": "string"}}, "required": ["q"]}}}
tc_dict = {"type": "function", "function": {"name": "get_weather", "arguments": {"location": "Paris \"FR\"", "unit": "celsius", "days": 3, "ratio": 0.5}}}
tc_str = {"type": "function", "function": {"name": "search", "arguments": "{\"q\": \"hawaii\"}"}}
basic = [{"role": "user", "content": "Hi"}]
sys_user = [{"role": "system", "content": "  Be brief.  \n"}, {"role": "user", "content": "  What's 2+2? <b>&amp;</b>\n"}]
multi = [{"role": "user", "content": "Who are you?"}, {"role": "assistant", "content": "<think>\nhmm\n</think>\n\nI am a bot."},
         {"role": "user", "content": "How old are you?"}, {"role": "assistant", "content": "<think>\nlet me think\n</think>\n\n11 years old."}]
reasoning = [{"role": "user", "content": "Q1"}, {"role": "assistant", "content": "A1", "reasoning_content": "R1"},
             {"role": "user", "content": "Q2"}, {"role": "assistant", "content": "A2", "reasoning_content": "\nR2\n"}]
tool_flow = [{"role": "system", "content": "You are helpful."}, {"role": "user", "content": "Weather in Paris?"},
             {"role": "assistant", "content": "", "tool_calls": [tc_dict]},
             {"role": "tool", "content": "{\"temp\": 21}"},
             {"role": "assistant", "content": "It is 21°C."}]
tool_flow_multi = [{"role": "user", "content": "Weather in Paris and search hawaii"},
             {"role": "assistant", "content": "Calling tools", "tool_calls": [tc_dict, tc_str]},
             {"role": "tool", "content": "{\"temp\": 21}"}, {"role": "tool", "content": "results..."},
             {"role": "user", "content": "<tool_response>\nfake\n</tool_response>"}]
ds_tools = [{"role": "user", "content": "Weather?"},
            {"role": "assistant", "content": None, "tool_calls": [{"type": "function", "function": {"name": "get_weather", "arguments": "{\"location\": \"Paris\"}"}},
                                                                  {"type": "function", "function": {"name": "search", "arguments": "{\"q\": \"x\"}"}}]},
            {"role": "tool", "content": "21C"}, {"role": "tool", "content": "found"},
            {"role": "assistant", "content": "Done"}]
llama_tool = [{"role": "user", "content": "Weather in Paris?"},
              {"role": "assistant", "tool_calls": [tc_dict]},
              {"role": "tool", "content": {"temp": 21, "unit": "C"}},
              {"role": "ipython", "content": "plain text result"}]
llama_builtin = [{"role": "user", "content": "Search hawaii"},
              {"role": "assistant", "tool_calls": [{"type": "function", "function": {"name": "brave_search", "arguments": {"query": "hawaii", "count": "3"}}}]}]
cases = []
def add(tpl, name, messages, agp=False, tools=None, kwargs=None, documents=None):
    cases.append(dict(template=tpl, case=name, messages=messages, add_generation_prompt=agp, tools=tools, kwargs=kwargs or {}, documents=documents))
for t in T_ALL:
    add(t, "basic_gen", basic, True)
    add(t, "sys_user_ws", sys_user, True)
    add(t, "multi_think", multi, False)
    add(t, "multi_think_gen", multi + [{"role": "user", "content": "more"}], True)
for t in ["Qwen-Qwen3-0.6B", "Qwen-Qwen2.5-7B-Instruct", "Qwen-QwQ-32B"]:
    add(t, "tools_sys", sys_user, True, [weather, search])
    add(t, "tools_nosys", basic, True, [weather])
    add(t, "tool_flow", tool_flow, True, [weather])
    add(t, "tool_flow_multi", tool_flow_multi, False, [weather, search])
add("Qwen-Qwen3-0.6B", "reasoning_content", reasoning, True)
add("Qwen-Qwen3-0.6B", "reasoning_content_think_false", reasoning, True, kwargs={"enable_thinking": False})
add("Qwen-Qwen3-0.6B", "think_true", basic, True, kwargs={"enable_thinking": True})
add("deepseek-ai-DeepSeek-R1-Distill-Qwen-32B", "ds_tools", ds_tools, True)
add("deepseek-ai-DeepSeek-R1-Distill-Qwen-32B", "ds_sys", sys_user + [{"role": "assistant", "content": "<think>x</think>4"}], True)
for t in ["meta-llama-Llama-3.1-8B-Instruct", "meta-llama-Llama-3.2-3B-Instruct"]:
    add(t, "llama_tools_user", sys_user, True, [weather])
    add(t, "llama_tools_sys", sys_user, True, [weather], kwargs={"tools_in_user_message": False})
    add(t, "llama_tool_flow", llama_tool, True, [weather])
    add(t, "llama_date", basic, True, kwargs={"date_string": "01 Jan 2025"})
    add(t, "llama_custom_tools", basic, True, kwargs={"custom_tools": [search]})
    add(t, "llama_raise_two_calls", [{"role": "user", "content": "x"}, {"role": "assistant", "tool_calls": [tc_dict, tc_str]}], False)
    add(t, "llama_raise_no_user", [{"role": "system", "content": "s"}], True, [weather])
    add(t, "with_documents", basic, True, documents=[{"title": "t", "text": "d"}])
add("meta-llama-Llama-3.1-8B-Instruct", "llama_builtin", llama_builtin, True, kwargs={"builtin_tools": ["brave_search", "wolfram_alpha", "code_interpreter"]})
null_flow = [{"role": "user", "content": "Weather in Paris?"},
             {"role": "assistant", "content": None, "tool_calls": [tc_dict], "reasoning_content": None},
             {"role": "tool", "content": "{\"temp\": 21}", "tool_call_id": None},
             {"role": "assistant", "content": "21C", "reasoning_content": None}]
for t in T_ALL:
    add(t, "null_content_toolcall", null_flow, True, [weather])
    add(t, "empty_tools_list", basic, True, [])
for c in cases:
    src = open(D + c["template"] + ".jinja").read()
    try:
        c["rendered"] = render(src, c); c["error"] = None
    except Exception as e:
        c["rendered"] = None; c["error"] = f"{type(e).__name__}: {e}"
json.dump(cases, open(os.path.join(os.path.dirname(os.path.abspath(__file__)), "jinja_reference_cases.json"), "w"), ensure_ascii=False, indent=1)
print(len(cases), "cases;", sum(c["error"] is not None for c in cases), "errors")
for c in cases:
    if c["error"]: print(c["template"], c["case"], c["error"])
