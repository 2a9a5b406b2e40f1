#include "structured.hpp"

#include "af/core/error.hpp"

namespace af::server {

std::shared_ptr<const runtime::JsonGrammar> response_grammar(
    const ApiRequest& request, const runtime::JsonSchemaLimits& limits) {
  if (request.json_schema.is_null()) return nullptr;
  try {
    return runtime::compile_json_schema(request.json_schema, limits);
  } catch (const Error& e) {
    throw ApiError(400, std::string("Invalid schema for response_format: ") + e.what(),
                   "invalid_request_error", "response_format.json_schema.schema",
                   e.code() == ErrorCode::kUnsupported ? "unsupported_value" : "invalid_value");
  }
}

}  // namespace af::server
