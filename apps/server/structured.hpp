#pragma once
// Structured outputs: a request's response_format (json_object, json_schema) as the grammar the
// scheduler constrains generation with.
#include <memory>

#include "af/runtime/json_schema.hpp"
#include "api.hpp"

namespace af::server {

// nullptr for text (json_object is the scheduler's own flag). A schema that does not compile
// gives ApiError 400 on param "response_format.json_schema.schema" whose message names the
// keyword and its place in the schema (unsupported keyword, bad value, a limit).
std::shared_ptr<const runtime::JsonGrammar> response_grammar(
    const ApiRequest& request, const runtime::JsonSchemaLimits& limits = {});

}  // namespace af::server
