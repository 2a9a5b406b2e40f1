"""Structured outputs through af-server (test_server.py runs these): response_format
json_schema with the official openai client over 50 seeds at temperature 1, every answer parsed
and validated with jsonschema (formats checked too); the grammar ends the document itself
(finish_reason "stop"), max_tokens cuts it ("length"); bad schemas get 400 naming the keyword."""
import json

import jsonschema
import openai

PERSON = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "minLength": 1, "maxLength": 12},
        "age": {"type": "integer", "minimum": 0, "maximum": 120},
        "mood": {"enum": ["happy", "sad", "sleepy"]},
        "pet": {"anyOf": [{"type": "null"},
                          {"type": "object", "properties": {"kind": {"const": "cat"}},
                           "required": ["kind"], "additionalProperties": False}]},
        "tags": {"type": "array", "items": {"type": "string", "maxLength": 6},
                 "minItems": 1, "maxItems": 3},
        "born": {"type": "string", "format": "date"},
        "id": {"$ref": "#/$defs/uuid"},
        "score": {"type": "number"},
    },
    "required": ["name", "age", "mood", "pet", "tags", "born", "id"],
    "additionalProperties": False,
    "$defs": {"uuid": {"type": "string", "format": "uuid"}},
}

MESSAGES = [{"role": "user", "content": "Describe a person as JSON."}]


def check(cond, what):
    if not cond:
        raise AssertionError(what)


def validate(text, schema, what):
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as e:
        raise AssertionError(f"{what}: not JSON ({e}): {text!r}")
    try:
        jsonschema.validate(doc, schema, format_checker=jsonschema.FormatChecker())
    except jsonschema.ValidationError as e:
        raise AssertionError(f"{what}: {e.message}: {text!r}")


def response_format(schema):
    return {"type": "json_schema",
            "json_schema": {"name": "person", "schema": schema, "strict": True}}


def test_json_schema_seeds(client, seeds=50):
    for seed in range(seeds):
        r = client.chat.completions.create(
            model="m", messages=MESSAGES, temperature=1, seed=seed, max_tokens=400,
            response_format=response_format(PERSON))
        choice = r.choices[0]
        check(choice.finish_reason == "stop", f"seed {seed}: finish_reason {choice.finish_reason}")
        validate(choice.message.content, PERSON, f"seed {seed}")


def test_json_schema_streaming(client, seeds=10):
    for seed in range(seeds):
        text, finish = "", None
        for chunk in client.chat.completions.create(
                model="m", messages=MESSAGES, temperature=1, seed=seed, max_tokens=400,
                stream=True, response_format=response_format(PERSON)):
            if chunk.choices:
                text += chunk.choices[0].delta.content or ""
                finish = chunk.choices[0].finish_reason or finish
        check(finish == "stop", f"stream seed {seed}: finish_reason {finish}")
        validate(text, PERSON, f"stream seed {seed}")
        same = client.chat.completions.create(
            model="m", messages=MESSAGES, temperature=1, seed=seed, max_tokens=400,
            response_format=response_format(PERSON))
        check(same.choices[0].message.content == text, f"seed {seed}: stream != non-stream")


def test_json_schema_length_and_object(client):
    r = client.chat.completions.create(
        model="m", messages=MESSAGES, temperature=1, seed=1, max_tokens=4,
        response_format=response_format(PERSON))
    check(r.choices[0].finish_reason == "length", f"cut: {r.choices[0].finish_reason}")
    cut = r.choices[0].message.content.lstrip()
    check(cut == "" or cut.startswith("{"), f"cut text is the object's start: {cut!r}")
    for seed in range(5):
        r = client.chat.completions.create(
            model="m", messages=MESSAGES, temperature=1, seed=seed, max_tokens=400,
            response_format={"type": "json_object"})
        if r.choices[0].finish_reason == "stop":
            check(isinstance(json.loads(r.choices[0].message.content), dict), "json_object")


def test_json_schema_errors(server, expect_error):
    def body(fmt):
        return {"model": "m", "messages": MESSAGES, "response_format": fmt}
    for schema, needle in [({"type": "string", "pattern": "^a"}, "'pattern'"),
                           ({"type": "string", "format": "email"}, "format 'email'"),
                           ({"type": "array", "minItems": 2, "maxItems": 1}, "minItems"),
                           ({"$ref": "#/$defs/nope"}, "does not resolve"),
                           ({"anyOf": [{"$ref": "#"}]}, "refers to itself")]:
        expect_error(server, "/v1/chat/completions", body(response_format(schema)), 400,
                     param="response_format.json_schema.schema")
        status, data, _ = server.request("POST", "/v1/chat/completions",
                                         body(response_format(schema)))
        check(needle in json.loads(data)["error"]["message"], f"{needle} in {data[:300]}")
    huge = {"anyOf": [{"const": i} for i in range(5000)]}  # past 4096 nodes
    expect_error(server, "/v1/chat/completions", body(response_format(huge)), 400,
                 param="response_format.json_schema.schema")
    expect_error(server, "/v1/chat/completions",
                 body({"type": "json_schema", "json_schema": {"schema": {}}}), 400,
                 code="missing_required_parameter", param="response_format.json_schema.name")
    expect_error(server, "/v1/chat/completions", body({"type": "json_schema"}), 400,
                 code="missing_required_parameter", param="response_format.json_schema")
