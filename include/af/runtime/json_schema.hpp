#pragma once
// JSON Schema to a grammar for constrained decoding (response_format json_schema, tools).
//
// compile_json_schema() turns a schema into a JsonGrammar: a graph of value nodes that
// runtime::JsonMatcher (src/runtime/json_matcher.hpp) follows byte by byte, so that generation
// can only produce documents that validate against the schema. Supported: type (one or a list),
// enum, const, properties / required / additionalProperties (false when absent, as llama.cpp's
// converter assumes; true or a schema allows other keys), items, minItems / maxItems,
// minLength / maxLength, integer minimum / maximum / exclusiveMinimum / exclusiveMaximum,
// string formats date, time, date-time (UTC, "Z") and uuid, $ref to "#" or "#/$defs/..." /
// "#/definitions/..." (recursion allowed), anyOf, oneOf (treated as anyOf: the alternatives of
// such schemas rarely overlap), allOf with one member, nullable. Annotations (title,
// description, default, examples, $schema, $id, $comment, deprecated, readOnly, writeOnly) are
// ignored. Any other keyword (pattern, multipleOf, number minimum, ...) or format is refused
// with kUnsupported naming it, so a schema is never silently weakened.
#include <cstddef>
#include <memory>
#include <string_view>

#include <nlohmann/json.hpp>

namespace af::runtime {

struct JsonSchemaLimits {
  size_t max_schema_bytes = size_t{256} << 10;  // text given to the string overload
  size_t max_nodes = 4096;     // compiled value nodes (each schema, enum value tries excluded)
  size_t max_properties = 64;  // properties of one object schema
  size_t max_enum_bytes = size_t{64} << 10;  // serialized enum/const values of one schema
  int max_schema_depth = 64;                 // nesting of the schema document while compiling
  int max_nesting = 32;                      // open objects, arrays and values while generating
  int max_whitespace = 4;                    // consecutive whitespace bytes between JSON tokens
};

class JsonGrammar;  // opaque; src/runtime/json_grammar.hpp

// Throws af::Error kInvalidArgument for a schema that is not valid or cannot be satisfied
// (naming the keyword and its path, e.g. "#/properties/age/minimum"), kUnsupported for a keyword
// or format outside the supported set, kOutOfRange past a limit.
std::shared_ptr<const JsonGrammar> compile_json_schema(const nlohmann::json& schema,
                                                       const JsonSchemaLimits& limits = {});
std::shared_ptr<const JsonGrammar> compile_json_schema_text(std::string_view schema_text,
                                                            const JsonSchemaLimits& limits = {});
// The same grammar with literal text before and after the value (no whitespace between), e.g.
// "<tool_call>\n" and "\n</tool_call>" for a Hermes-style tool call.
std::shared_ptr<const JsonGrammar> wrap_json_grammar(const std::shared_ptr<const JsonGrammar>& g,
                                                     std::string prefix, std::string suffix);
// Any JSON object (response_format json_object).
std::shared_ptr<const JsonGrammar> json_object_grammar(const JsonSchemaLimits& limits = {});

}  // namespace af::runtime
