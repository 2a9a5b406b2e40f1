"""Function calling through af-server (test_server.py runs these) with the official openai
client: stories260K-hf given Qwen2.5's chat template (testdata), so tools reach the template
and calls use its <tool_call> syntax. tool_choice "required" and a named function are forced by
the grammar: over 50 seeds at temperature 1 every answer has valid tool_calls whose arguments
validate against the tool's parameters (jsonschema); streaming gives the same calls as
delta.tool_calls; assistant tool_calls and tool messages render; malformed calls stay text."""
import json
import os
import shutil
import tempfile

import jsonschema
import openai

TOOLS = [
    {"type": "function", "function": {
        "name": "get_weather", "description": "Weather in a city",
        "parameters": {"type": "object",
                       "properties": {"city": {"type": "string", "maxLength": 12},
                                      "unit": {"enum": ["celsius", "fahrenheit"]}},
                       "required": ["city", "unit"]}}},
    {"type": "function", "function": {
        "name": "add", "parameters": {"type": "object",
                                      "properties": {"a": {"type": "integer"},
                                                     "b": {"type": "integer"}},
                                      "required": ["a", "b"]}}},
]
PARAMS = {t["function"]["name"]: t["function"]["parameters"] for t in TOOLS}
MESSAGES = [{"role": "user", "content": "What is the weather in Paris?"}]


def check(cond, what):
    if not cond:
        raise AssertionError(what)


def model_with_qwen_template(model_dir, testdata):
    """A copy of the model folder whose tokenizer_config.json carries Qwen2.5's template."""
    out = tempfile.mkdtemp(prefix="af_tools_model_")
    for name in os.listdir(model_dir):
        os.symlink(os.path.abspath(os.path.join(model_dir, name)), os.path.join(out, name))
    os.remove(os.path.join(out, "tokenizer_config.json"))
    with open(os.path.join(model_dir, "tokenizer_config.json")) as f:
        config = json.load(f)
    with open(os.path.join(testdata, "templates", "Qwen-Qwen2.5-7B-Instruct.jinja")) as f:
        config["chat_template"] = f.read()
    with open(os.path.join(out, "tokenizer_config.json"), "w") as f:
        json.dump(config, f)
    return out


def check_calls(calls, what, only=None):
    check(calls, f"{what}: no tool_calls")
    for call in calls:
        check(call.id.startswith("call_") and call.type == "function", f"{what}: {call}")
        name = call.function.name
        check(name in PARAMS and (only is None or name == only), f"{what}: name {name}")
        jsonschema.validate(json.loads(call.function.arguments), PARAMS[name])


def test_required_seeds(client, seeds=50):
    for seed in range(seeds):
        r = client.chat.completions.create(model="m", messages=MESSAGES, tools=TOOLS,
                                           tool_choice="required", temperature=1, seed=seed,
                                           max_tokens=200)
        choice = r.choices[0]
        check(choice.finish_reason == "tool_calls", f"seed {seed}: {choice.finish_reason} "
                                                    f"{choice.message.content!r}")
        check_calls(choice.message.tool_calls, f"seed {seed}")


def test_named_and_streaming(client, seeds=10):
    named = {"type": "function", "function": {"name": "add"}}
    for seed in range(seeds):
        r = client.chat.completions.create(model="m", messages=MESSAGES, tools=TOOLS,
                                           tool_choice=named, temperature=1, seed=seed,
                                           max_tokens=200)
        check(r.choices[0].finish_reason == "tool_calls", f"named seed {seed}")
        check_calls(r.choices[0].message.tool_calls, f"named seed {seed}", only="add")
        deltas, finish = [], None
        for chunk in client.chat.completions.create(
                model="m", messages=MESSAGES, tools=TOOLS, tool_choice=named, temperature=1,
                seed=seed, max_tokens=200, stream=True):
            if chunk.choices:
                deltas += chunk.choices[0].delta.tool_calls or []
                finish = chunk.choices[0].finish_reason or finish
        check(finish == "tool_calls", f"stream seed {seed}: {finish}")
        check([d.function.name for d in deltas] == ["add"], f"stream seed {seed}: {deltas}")
        check(json.loads(deltas[0].function.arguments) ==
              json.loads(r.choices[0].message.tool_calls[0].function.arguments),
              f"stream seed {seed}: arguments differ")


def test_history_and_auto(client):
    history = MESSAGES + [
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "call_1", "type": "function",
             "function": {"name": "get_weather",
                          "arguments": "{\"city\": \"Paris\", \"unit\": \"celsius\"}"}}]},
        {"role": "tool", "tool_call_id": "call_1", "content": "{\"temp\": 21}"}]
    r = client.chat.completions.create(model="m", messages=history, tools=TOOLS,
                                       temperature=0, max_tokens=20)
    check(r.choices[0].finish_reason in ("stop", "length", "tool_calls"), "auto answer")
    r = client.chat.completions.create(model="m", messages=MESSAGES, tools=TOOLS,
                                       tool_choice="none", temperature=0, max_tokens=20)
    check(not r.choices[0].message.tool_calls, "none: no calls")


def test_tool_errors(server, expect_error):
    body = {"model": "m", "messages": MESSAGES, "tool_choice": "required",
            "tools": [{"type": "function", "function": {
                "name": "f", "parameters": {"type": "string", "pattern": "x"}}}]}
    expect_error(server, "/v1/chat/completions", body, 400,
                 param="tools[0].function.parameters")
    body["tools"] = [{"type": "function", "function": {}}]
    expect_error(server, "/v1/chat/completions", body, 400,
                 param="tools[0].function.name")
    body = {"model": "m", "messages": MESSAGES, "tools": TOOLS,
            "tool_choice": {"type": "function", "function": {"name": "nope"}}}
    expect_error(server, "/v1/chat/completions", body, 400, param="tool_choice")
