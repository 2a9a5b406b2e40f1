#include "af/tokenizer/chat_template.hpp"

#include <filesystem>
#include <fstream>
#include <sstream>

#include "af/core/error.hpp"
#include "af/io/gguf.hpp"
#include "io/json_util.hpp"
#include "tokenizer/chat_template/interpreter.hpp"

namespace af::tok {

ChatTemplate::ChatTemplate(std::shared_ptr<const jinja::Program> program)
    : program_(std::move(program)) {}

ChatTemplate ChatTemplate::parse(std::string source, std::string origin) {
  return ChatTemplate(jinja::parse_program(std::move(source), std::move(origin)));
}

std::string ChatTemplate::render(const nlohmann::ordered_json& context,
                                 const TemplateLimits& limits) const {
  if (!context.is_object())
    fail(ErrorCode::kInvalidArgument, "template", program_->origin,
         ": context must be a JSON object");
  jinja::Value values;
  try {
    values = jinja::from_json(context);
  } catch (const std::length_error& e) {
    fail(ErrorCode::kInvalidArgument, "template", program_->origin, ": ", e.what());
  }
  jinja::Interpreter interpreter(*program_, limits);
  return interpreter.render(values);
}

std::string ChatTemplate::render(const nlohmann::json& context,
                                 const TemplateLimits& limits) const {
  return render(nlohmann::ordered_json(context), limits);
}

const std::string& ChatTemplate::origin() const { return program_->origin; }
const std::string& ChatTemplate::source() const { return program_->source; }

namespace {

std::string read_text(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) fail(ErrorCode::kIo, "template", "cannot open ", path.string());
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// tokenizer_config.json holds its added tokens (about 6 values each, a few thousand tokens at
// most in real models); a million values leaves ample room while keeping a hostile file from
// allocating more than a few tens of MB before it is refused.
constexpr size_t kTokenizerConfigMaxValues = size_t{1} << 20;

// tokenizer_config.json's chat_template: a string, or a list of {name, template} entries.
std::optional<std::string> template_from_config(const std::filesystem::path& path) {
  io::detail::JsonLimits limits;
  limits.max_elements = kTokenizerConfigMaxValues;
  // Linear, with nesting depth and value count capped; errors name the file.
  const nlohmann::json config =
      io::detail::parse_json(read_text(path), path.string(), "template", limits);
  if (!config.is_object())
    fail(ErrorCode::kFormat, "template", path.string(), ": expected a JSON object");
  auto it = config.find("chat_template");
  if (it == config.end() || it->is_null()) return std::nullopt;
  if (it->is_string()) return it->get<std::string>();
  if (it->is_array()) {
    for (const auto& entry : *it) {
      if (!entry.is_object() || !entry.contains("name") || !entry.contains("template") ||
          !entry["name"].is_string() || !entry["template"].is_string()) {
        fail(ErrorCode::kFormat, "template", path.string(),
             ": chat_template list entries need string 'name' and 'template'");
      }
      if (entry["name"] == "default") return entry["template"].get<std::string>();
    }
    return std::nullopt;
  }
  fail(ErrorCode::kFormat, "template", path.string(), ": chat_template must be a string or a list");
}

std::optional<std::string> template_from_folder(const std::filesystem::path& dir) {
  if (std::filesystem::is_regular_file(dir / "chat_template.jinja"))
    return read_text(dir / "chat_template.jinja");
  if (std::filesystem::is_regular_file(dir / "tokenizer_config.json")) {
    if (auto t = template_from_config(dir / "tokenizer_config.json")) return t;
  }
  if (std::filesystem::is_regular_file(dir / "chat_template.json"))
    return template_from_config(dir / "chat_template.json");
  return std::nullopt;
}

// Gemma's template as google/gemma-3-*-it ship it (a system message is folded into the first
// user turn), for llama.cpp-converted Gemma GGUFs that carry none (e.g. gemma-3-270m's).
constexpr char kGemmaTemplate[] =
    "{{ bos_token }}\n"
    "{%- if messages[0]['role'] == 'system' -%}\n"
    "    {%- if messages[0]['content'] is string -%}\n"
    "        {%- set first_user_prefix = messages[0]['content'] + '\n\n' -%}\n"
    "    {%- else -%}\n"
    "        {%- set first_user_prefix = messages[0]['content'][0]['text'] + '\n\n' -%}\n"
    "    {%- endif -%}\n"
    "    {%- set loop_messages = messages[1:] -%}\n"
    "{%- else -%}\n"
    "    {%- set first_user_prefix = \"\" -%}\n"
    "    {%- set loop_messages = messages -%}\n"
    "{%- endif -%}\n"
    "{%- for message in loop_messages -%}\n"
    "    {%- if (message['role'] == 'user') != (loop.index0 % 2 == 0) -%}\n"
    "        {{ raise_exception(\"Conversation roles must alternate "
    "user/assistant/user/assistant/...\") }}\n"
    "    {%- endif -%}\n"
    "    {%- if (message['role'] == 'assistant') -%}\n"
    "        {%- set role = \"model\" -%}\n"
    "    {%- else -%}\n"
    "        {%- set role = message['role'] -%}\n"
    "    {%- endif -%}\n"
    "    {{ '<start_of_turn>' + role + '\n' + (first_user_prefix if loop.first else \"\") }}\n"
    "    {%- if message['content'] is string -%}\n"
    "        {{ message['content'] | trim }}\n"
    "    {%- elif message['content'] is iterable -%}\n"
    "        {%- for item in message['content'] -%}\n"
    "            {%- if item['type'] == 'image' -%}\n"
    "                {{ '<start_of_image>' }}\n"
    "            {%- elif item['type'] == 'text' -%}\n"
    "                {{ item['text'] | trim }}\n"
    "            {%- endif -%}\n"
    "        {%- endfor -%}\n"
    "    {%- else -%}\n"
    "        {{ raise_exception(\"Invalid content type\") }}\n"
    "    {%- endif -%}\n"
    "    {{ '<end_of_turn>\n' }}\n"
    "{%- endfor -%}\n"
    "{%- if add_generation_prompt -%}\n"
    "    {{'<start_of_turn>model\n'}}\n"
    "{%- endif -%}\n";

// A GGUF without tokenizer.chat_template: the family's own template where one is known.
std::optional<std::string> builtin_template(const io::GgufFile& gguf) {
  const io::GgufValue* arch = gguf.find("general.architecture");
  if (!arch) return std::nullopt;
  const std::string& name = arch->as_string("general.architecture");
  if (name == "gemma" || name == "gemma2" || name == "gemma3") return kGemmaTemplate;
  return std::nullopt;
}

}  // namespace

std::optional<std::string> find_chat_template(const std::string& model_path) {
  const std::filesystem::path path(model_path);
  std::error_code ec;
  if (std::filesystem::is_directory(path, ec)) return template_from_folder(path);
  if (!std::filesystem::is_regular_file(path, ec))
    fail(ErrorCode::kIo, "template", "no such file or folder: ", model_path);
  if (path.extension() == ".gguf") {
    const io::GgufFile gguf = io::GgufFile::open(model_path);
    const io::GgufValue* value = gguf.find("tokenizer.chat_template");
    if (!value) return builtin_template(gguf);
    return value->as_string("tokenizer.chat_template");
  }
  if (path.extension() == ".jinja") return read_text(path);
  if (path.filename() == "tokenizer_config.json" || path.filename() == "chat_template.json")
    return template_from_config(path);
  return template_from_folder(path.parent_path().empty() ? std::filesystem::path(".")
                                                         : path.parent_path());
}

}  // namespace af::tok
