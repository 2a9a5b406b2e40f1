// Hugging Face tokenizer files: tokenizer.json (tokenizers library format), the older
// vocab.json + merges.txt pair, and tokenizer_config.json (special tokens, add_bos/add_eos).
#include <algorithm>
#include <fstream>
#include <sstream>

#include "af/core/error.hpp"
#include "io/json_util.hpp"
#include "tokenizer/tokenizer_impl.hpp"

namespace af::tok::detail {
namespace {

using nlohmann::json;

// Exactly the split patterns the hand-written matchers in pretokenize.cpp implement.
constexpr std::string_view kGpt2Pattern =
    R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";
constexpr std::string_view kLlama3Pattern =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";
constexpr std::string_view kQwen2Pattern =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";
constexpr std::string_view kMetaspace = "\xE2\x96\x81";

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  AF_CHECK(in.good(), ErrorCode::kIo, kComponent, path, ": cannot open");
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

json read_json(const std::string& path) {
  return io::detail::parse_json(read_file(path), path, kComponent);
}

[[noreturn]] void bad(const std::string& origin, const std::string& field, const std::string& why) {
  fail(ErrorCode::kFormat, kComponent, origin, ": ", field, " ", why);
}

const std::string& str(const json& j, const std::string& origin, const std::string& field) {
  if (!j.is_string()) bad(origin, field, "must be a string");
  return j.get_ref<const std::string&>();
}

bool flag(const json& obj, const char* key, bool fallback) {
  auto it = obj.find(key);
  return (it != obj.end() && it->is_boolean()) ? it->get<bool>() : fallback;
}

// A special token in tokenizer_config.json: "..." or {"content": "..."} or null.
std::string token_text(const json& cfg, const char* key) {
  auto it = cfg.find(key);
  if (it == cfg.end() || it->is_null()) return {};
  if (it->is_string()) return it->get<std::string>();
  if (it->is_object() && it->contains("content") && (*it)["content"].is_string())
    return (*it)["content"].get<std::string>();
  return {};
}

void set_piece(Tokenizer::Impl& m, int64_t id, const std::string& piece, TokenKind kind,
               const std::string& field) {
  if (id < 0 || id >= std::min<int64_t>(m.id_limit, (int64_t(1) << 31) - 1))
    bad(m.origin, field, "has the id " + std::to_string(id) + ", out of range");
  if (static_cast<size_t>(id) >= m.pieces.size()) {
    m.pieces.resize(id + 1);
    m.kinds.resize(id + 1, TokenKind::kInvalid);
  }
  m.pieces[id] = piece;
  m.kinds[id] = kind;
}

void add_token(Tokenizer::Impl& m, const json& t, int64_t id, const std::string& field) {
  if (!t.is_object()) bad(m.origin, field, "must be an object");
  AddedToken a;
  a.content = str(t.value("content", json()), m.origin, field + ".content");
  a.id = static_cast<int32_t>(id);
  a.special = flag(t, "special", false);
  a.lstrip = flag(t, "lstrip", false);
  a.rstrip = flag(t, "rstrip", false);
  a.single_word = flag(t, "single_word", false);
  a.normalized = flag(t, "normalized", !a.special);  // HF's default
  set_piece(m, id, a.content, a.special ? TokenKind::kControl : TokenKind::kUserDefined, field);
  for (AddedToken& old : m.added) {
    if (old.id == a.id) {
      old = a;
      return;
    }
  }
  m.added.push_back(std::move(a));
}

// A literal Split pattern as a regex that matches exactly that text.
std::string escape_regex(const std::string& text) {
  std::string out;
  for (char c : text) {
    if (std::string_view("\\^$.|?*+()[]{}-/").find(c) != std::string_view::npos)
      out.push_back('\\');
    out.push_back(c);
  }
  return out;
}

std::string base64_decode(const std::string& text, const std::string& origin,
                          const std::string& field) {
  auto value = [](char c) -> int {
    if (c >= 'A' && c <= 'Z') return c - 'A';
    if (c >= 'a' && c <= 'z') return c - 'a' + 26;
    if (c >= '0' && c <= '9') return c - '0' + 52;
    if (c == '+') return 62;
    if (c == '/') return 63;
    return -1;
  };
  std::string out;
  out.reserve(text.size() / 4 * 3);
  uint32_t acc = 0;
  int bits = 0;
  for (size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    if (c == '=') break;
    const int v = value(c);
    if (v < 0) bad(origin, field, "is not base64 (character " + std::to_string(i) + ")");
    acc = (acc << 6) | static_cast<uint32_t>(v);
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out.push_back(static_cast<char>((acc >> bits) & 0xFF));
    }
  }
  return out;
}

void parse_normalizer(Tokenizer::Impl& m, const json& n) {
  if (n.is_null()) return;
  if (!n.is_object()) bad(m.origin, "normalizer", "must be an object");
  const std::string type = n.value("type", "");
  if (type == "Sequence") {
    const json subs = n.value("normalizers", json::array());
    if (!subs.is_array()) bad(m.origin, "normalizer.normalizers", "must be an array");
    for (const json& sub : subs) parse_normalizer(m, sub);
  } else if (type == "NFC") {
    m.norm_steps.push_back(NormStep::kNfc);
  } else if (type == "NFD") {
    m.norm_steps.push_back(NormStep::kNfd);
  } else if (type == "NFKC") {
    m.norm_steps.push_back(NormStep::kNfkc);
  } else if (type == "NFKD") {
    m.norm_steps.push_back(NormStep::kNfkd);
  } else if (type == "Lowercase") {
    m.norm_steps.push_back(NormStep::kLowercase);
  } else if (type == "StripAccents") {
    m.norm_steps.push_back(NormStep::kStripAccents);
  } else if (type == "BertNormalizer") {
    // HF order: clean text, CJK spacing, strip accents (default: when lowercasing), lowercase.
    const bool lowercase = flag(n, "lowercase", true);
    const json sa = n.value("strip_accents", json());
    const bool strip = sa.is_boolean() ? sa.get<bool>() : lowercase;
    if (flag(n, "clean_text", true)) m.norm_steps.push_back(NormStep::kBertCleanText);
    if (flag(n, "handle_chinese_chars", true)) m.norm_steps.push_back(NormStep::kBertChinese);
    if (strip) m.norm_steps.push_back(NormStep::kBertStripAccents);
    if (lowercase) m.norm_steps.push_back(NormStep::kLowercase);
  } else if (type == "Precompiled") {
    const json cm = n.value("precompiled_charsmap", json());
    if (cm.is_null()) return;  // an empty map changes nothing
    const std::string blob = base64_decode(str(cm, m.origin, "normalizer.precompiled_charsmap"),
                                           m.origin, "normalizer.precompiled_charsmap");
    m.charsmap = PrecompiledCharsmap::parse(blob, m.origin + " normalizer.precompiled_charsmap");
    m.norm_steps.push_back(NormStep::kPrecompiled);
  } else if (type == "Prepend" && n.value("prepend", "") == kMetaspace) {
    m.prepend = PrependScheme::kAlways;
  } else if (type == "Replace" && n.contains("pattern") && n["pattern"].is_object() &&
             n["pattern"].value("String", "") == " " && n.value("content", "") == kMetaspace) {
    m.metaspace = true;  // SentencePiece-style: applied with the "▁" handling of the model
  } else if (type == "Replace") {
    const json pat = n.value("pattern", json());
    if (!pat.is_object()) bad(m.origin, "normalizer.pattern", "must be an object");
    std::string pattern;
    if (pat.contains("Regex")) {
      pattern = str(pat["Regex"], m.origin, "normalizer.pattern.Regex");
    } else if (pat.contains("String")) {
      pattern = escape_regex(str(pat["String"], m.origin, "normalizer.pattern.String"));
    } else {
      bad(m.origin, "normalizer.pattern", "has neither Regex nor String");
    }
    ReplaceRule rule;
    rule.pattern = std::make_shared<Regex>(pattern, m.origin + " normalizer Replace");
    try {
      rule.content = decode_utf8(str(n.value("content", json()), m.origin, "normalizer.content"));
    } catch (const Error&) {
      bad(m.origin, "normalizer.content", "is not valid UTF-8");
    }
    m.replace_rules.push_back(std::move(rule));
    m.norm_steps.push_back(NormStep::kReplace);
  } else {
    fail(ErrorCode::kUnsupported, kComponent, m.origin, ": normalizer ", n.dump(),
         " is not supported yet");
  }
}

SplitBehavior behavior_of(const std::string& origin, const json& p, SplitBehavior fallback) {
  const json b = p.value("behavior", json());
  if (b.is_null()) return fallback;
  if (!b.is_string()) bad(origin, "pre_tokenizer.behavior", "must be a string");
  const std::string name = b.get<std::string>();
  if (name == "Removed") return SplitBehavior::kRemoved;
  if (name == "Isolated") return SplitBehavior::kIsolated;
  if (name == "MergedWithPrevious") return SplitBehavior::kMergedWithPrevious;
  if (name == "MergedWithNext") return SplitBehavior::kMergedWithNext;
  if (name == "Contiguous") return SplitBehavior::kContiguous;
  bad(origin, "pre_tokenizer.behavior", "\"" + name + "\" is not a split behaviour");
}

void parse_pre_tokenizer(Tokenizer::Impl& m, const json& p) {
  if (p.is_null()) return;
  if (!p.is_object()) bad(m.origin, "pre_tokenizer", "must be an object");
  const std::string type = p.value("type", "");
  auto push = [&](SplitKind kind, SplitBehavior behavior, bool invert = false) {
    PreSplit step;
    step.kind = kind;
    step.behavior = behavior;
    step.invert = invert;
    m.splits.push_back(std::move(step));
  };
  if (type == "Sequence") {
    const json subs = p.value("pretokenizers", json::array());
    if (!subs.is_array()) bad(m.origin, "pre_tokenizer.pretokenizers", "must be an array");
    for (const json& sub : subs) parse_pre_tokenizer(m, sub);
  } else if (type == "ByteLevel") {
    m.byte_level = true;
    m.byte_level_prefix_space = flag(p, "add_prefix_space", false);
    if (flag(p, "use_regex", true)) push(SplitKind::kGpt2, SplitBehavior::kIsolated);
  } else if (type == "Split" && p.contains("pattern") && p["pattern"].is_object()) {
    const json& pat = p["pattern"];
    std::string pattern;
    if (pat.contains("Regex")) {
      pattern = str(pat["Regex"], m.origin, "pre_tokenizer.pattern.Regex");
    } else if (pat.contains("String")) {
      pattern = escape_regex(str(pat["String"], m.origin, "pre_tokenizer.pattern.String"));
    } else {
      bad(m.origin, "pre_tokenizer.pattern", "has neither Regex nor String");
    }
    PreSplit step;
    step.behavior = behavior_of(m.origin, p, SplitBehavior::kIsolated);
    step.invert = flag(p, "invert", false);
    if (pattern == kGpt2Pattern) {
      step.kind = SplitKind::kGpt2;
    } else if (pattern == kLlama3Pattern) {
      step.kind = SplitKind::kLlama3;
    } else if (pattern == kQwen2Pattern) {
      step.kind = SplitKind::kQwen2;
    } else {
      step.regex = std::make_shared<Regex>(pattern, m.origin + " pre_tokenizer Split");
    }
    m.splits.push_back(std::move(step));
  } else if (type == "Metaspace" && p.value("replacement", "") == kMetaspace) {
    m.metaspace = true;
    m.prepend_if_missing = true;
    const std::string scheme = p.value("prepend_scheme", "");
    if (scheme == "first") {
      m.prepend = PrependScheme::kFirst;
    } else if (scheme == "never" || (scheme.empty() && !flag(p, "add_prefix_space", true))) {
      m.prepend = PrependScheme::kNever;
    } else {
      m.prepend = PrependScheme::kAlways;
    }
    m.metaspace_split = flag(p, "split", true);
  } else if (type == "BertPreTokenizer") {
    push(SplitKind::kWhiteSpace, SplitBehavior::kRemoved);
    push(SplitKind::kPunctuation, SplitBehavior::kIsolated);
  } else if (type == "WhitespaceSplit") {
    push(SplitKind::kWhiteSpace, SplitBehavior::kRemoved);
  } else if (type == "Whitespace") {
    PreSplit step;  // HF: the matches of \w+|[^\w\s]+ are kept, the rest removed
    step.regex = std::make_shared<Regex>(R"(\w+|[^\w\s]+)", m.origin + " Whitespace");
    step.behavior = SplitBehavior::kRemoved;
    step.invert = true;
    m.splits.push_back(std::move(step));
  } else if (type == "Punctuation") {
    push(SplitKind::kPunctuation, behavior_of(m.origin, p, SplitBehavior::kIsolated));
  } else if (type == "Digits") {
    push(SplitKind::kDigits, flag(p, "individual_digits", false) ? SplitBehavior::kIsolated
                                                                 : SplitBehavior::kContiguous);
  } else {
    fail(ErrorCode::kUnsupported, kComponent, m.origin, ": pre_tokenizer ", p.dump(),
         " is not supported yet");
  }
}

void parse_decoder(Tokenizer::Impl& m, const json& d) {
  if (d.is_null()) return;
  const std::string type = d.value("type", "");
  if (type == "Sequence") {
    for (const json& sub : d.value("decoders", json::array())) parse_decoder(m, sub);
  } else if (type == "Strip") {
    m.strip_leading_space = d.value("content", "") == " " && d.value("start", 0) >= 1;
  } else if (type == "WordPiece") {
    m.wordpiece_decoder = true;
    m.continuation_prefix = d.value("prefix", "##");
    m.wordpiece_cleanup = flag(d, "cleanup", true);
  } else if (type == "Metaspace") {
    m.strip_leading_space =
        d.value("prepend_scheme", "always") != "never" && flag(d, "add_prefix_space", true);
  }
  // Replace "▁"->" ", ByteFallback, Fuse and ByteLevel are what decoding does anyway.
}

// TemplateProcessing "single": special tokens before and after $A.
void parse_post_processor(Tokenizer::Impl& m, const json& p) {
  if (p.is_null()) return;
  const std::string type = p.value("type", "");
  auto id_of = [&](const std::string& name) -> int32_t {
    if (p.contains("special_tokens") && p["special_tokens"].contains(name)) {
      const json& ids = p["special_tokens"][name]["ids"];
      if (ids.is_array() && ids.size() == 1 && ids[0].is_number_integer()) return ids[0];
    }
    bad(m.origin, "post_processor.special_tokens", "has no single id for " + name);
  };
  if (type == "Sequence") {
    for (const json& sub : p.value("processors", json::array())) parse_post_processor(m, sub);
  } else if (type == "TemplateProcessing") {
    bool after = false;
    for (const json& item : p.value("single", json::array())) {
      if (item.contains("Sequence")) {
        after = true;
      } else if (item.contains("SpecialToken")) {
        const int32_t id = id_of(item["SpecialToken"].value("id", ""));
        (after ? m.suffix_ids : m.prefix_ids).push_back(id);
      }
    }
  } else if (type == "BertProcessing" || type == "RobertaProcessing") {
    auto id_at = [&](const char* key) -> int32_t {
      const json v = p.value(key, json());
      if (!v.is_array() || v.size() != 2 || !v[1].is_number_integer())
        bad(m.origin, std::string("post_processor.") + key, "must be [token, id]");
      return v[1].get<int32_t>();
    };
    m.prefix_ids.push_back(id_at("cls"));
    m.suffix_ids.push_back(id_at("sep"));
  }
}

// tokenizer_config.json: added tokens, BOS/EOS, and the add_bos_token / add_eos_token switches
// that transformers' Llama-family fast tokenizers turn into the post-processor.
void apply_config(Tokenizer::Impl& m, const std::string& config_path) {
  if (config_path.empty()) return;
  const json cfg = read_json(config_path);
  if (!cfg.is_object()) bad(config_path, "top level", "must be an object");
  if (auto it = cfg.find("added_tokens_decoder"); it != cfg.end() && it->is_object()) {
    for (auto& [key, t] : it->items()) {
      int64_t id = -1;
      try {
        id = std::stoll(key);
      } catch (const std::exception&) {
        bad(config_path, "added_tokens_decoder key \"" + key + "\"", "is not an id");
      }
      if (static_cast<size_t>(id) < m.pieces.size() && m.kinds[id] != TokenKind::kInvalid &&
          m.pieces[id] != t.value("content", "")) {
        continue;  // tokenizer.json is authoritative when both are present and disagree
      }
      add_token(m, t, id, "added_tokens_decoder." + key);
    }
  }
  m.finalize();  // index for the lookups below
  auto lookup = [&](const std::string& text) {
    if (text.empty()) return -1;
    auto it = m.index.find(text);
    return it == m.index.end() ? -1 : it->second;
  };
  if (cfg.contains("bos_token")) m.bos = lookup(token_text(cfg, "bos_token"));
  if (cfg.contains("eos_token")) m.eos = lookup(token_text(cfg, "eos_token"));
  if (auto it = cfg.find("add_bos_token"); it != cfg.end() && it->is_boolean()) {
    std::erase(m.prefix_ids, m.bos);
    if (it->get<bool>() && m.bos >= 0) m.prefix_ids.insert(m.prefix_ids.begin(), m.bos);
  }
  if (auto it = cfg.find("add_eos_token"); it != cfg.end() && it->is_boolean()) {
    std::erase(m.suffix_ids, m.eos);
    if (it->get<bool>() && m.eos >= 0) m.suffix_ids.push_back(m.eos);
  }
}

void add_merge(Tokenizer::Impl& m, const std::string& a, const std::string& b, size_t rank,
               const std::string& field) {
  auto ia = m.index.find(a), ib = m.index.find(b), iab = m.index.find(a + b);
  if (ia == m.index.end() || ib == m.index.end() || iab == m.index.end())
    bad(m.origin, field, "\"" + a + " " + b + "\" names tokens outside the vocabulary");
  m.merges.emplace((uint64_t(uint32_t(ia->second)) << 32) | uint32_t(ib->second),
                   std::make_pair(static_cast<int32_t>(rank), iab->second));
}

void read_vocab(Tokenizer::Impl& m, const json& vocab, const std::string& field) {
  if (!vocab.is_object()) bad(m.origin, field, "must be an object of token -> id");
  for (auto& [piece, id] : vocab.items()) {
    if (!id.is_number_integer()) bad(m.origin, field + "[\"" + piece + "\"]", "is not an id");
    set_piece(m, id.get<int64_t>(), piece, TokenKind::kNormal, field);
  }
}

}  // namespace

namespace {

void read_unigram_vocab(Tokenizer::Impl& m, const json& vocab) {
  if (!vocab.is_array()) bad(m.origin, "model.vocab", "must be an array of [piece, score]");
  AF_CHECK(vocab.size() < (size_t(1) << 31), ErrorCode::kFormat, kComponent, m.origin,
           ": model.vocab too big");
  m.unigram_scores.reserve(vocab.size());
  for (size_t id = 0; id < vocab.size(); ++id) {
    const json& e = vocab[id];
    const std::string field = "model.vocab[" + std::to_string(id) + "]";
    if (!e.is_array() || e.size() != 2 || !e[1].is_number())
      bad(m.origin, field, "must be [piece, score]");
    set_piece(m, static_cast<int64_t>(id), str(e[0], m.origin, field), TokenKind::kNormal, field);
    m.unigram_scores.push_back(e[1].get<double>());
  }
}

std::unique_ptr<Tokenizer::Impl> load_tokenizer_json_checked(const std::string& path,
                                                             const std::string& config_path) {
  auto m = std::make_unique<Tokenizer::Impl>();
  m->origin = path;
  const json j = read_json(path);
  if (!j.is_object() || !j.contains("model") || !j["model"].is_object())
    bad(path, "model", "is missing (not a tokenizer.json?)");
  const json& model = j["model"];
  {
    // Ids are dense in real files: allow gaps, not ids far beyond the number of entries.
    const json vocab = model.value("vocab", json());
    const json added = j.value("added_tokens", json());
    const int64_t entries = static_cast<int64_t>((vocab.is_structured() ? vocab.size() : 0) +
                                                 (added.is_array() ? added.size() : 0));
    m->id_limit = 2 * entries + 1024;
  }
  const json type_v = model.value("type", json("BPE"));
  if (!type_v.is_string()) bad(path, "model.type", "must be a string");
  const std::string type = type_v.get<std::string>();
  if (type == "BPE") {
    // An empty prefix/suffix changes nothing (faster-whisper's tokenizer.json files carry "").
    const auto set_affix = [&](const char* key) {
      const json v = model.value(key, json());
      return !v.is_null() && !(v.is_string() && v.get<std::string>().empty());
    };
    if (set_affix("continuing_subword_prefix") || set_affix("end_of_word_suffix"))
      fail(ErrorCode::kUnsupported, kComponent, path,
           ": BPE continuing_subword_prefix / end_of_word_suffix are not supported yet");
    const json dropout = model.value("dropout", json());
    if (dropout.is_number() && dropout.get<double>() > 0)
      fail(ErrorCode::kUnsupported, kComponent, path, ": BPE dropout is not supported");
    read_vocab(*m, model.value("vocab", json()), "model.vocab");
  } else if (type == "WordPiece") {
    m->model = ModelKind::kWordPiece;
    read_vocab(*m, model.value("vocab", json()), "model.vocab");
    const json prefix = model.value("continuing_subword_prefix", json("##"));
    m->continuation_prefix = str(prefix, path, "model.continuing_subword_prefix");
    const json max_chars = model.value("max_input_chars_per_word", json(100));
    if (!max_chars.is_number_integer() || max_chars.get<int64_t>() < 0)
      bad(path, "model.max_input_chars_per_word", "must be an integer >= 0");
    m->max_word_chars = static_cast<size_t>(max_chars.get<int64_t>());
  } else if (type == "Unigram") {
    m->model = ModelKind::kUnigram;
    read_unigram_vocab(*m, model.value("vocab", json()));
  } else {
    fail(ErrorCode::kUnsupported, kComponent, path, ": model type ", type,
         " is not supported (BPE, WordPiece and Unigram are)");
  }

  const json added = j.value("added_tokens", json::array());
  if (!added.is_array()) bad(path, "added_tokens", "must be an array");
  for (size_t i = 0; const json& t : added) {
    const std::string field = "added_tokens[" + std::to_string(i++) + "]";
    if (!t.is_object() || !t.contains("id") || !t["id"].is_number_integer())
      bad(path, field, "has no integer id");
    add_token(*m, t, t["id"].get<int64_t>(), field);
  }
  m->byte_fallback = flag(model, "byte_fallback", false);
  m->fuse_unk = flag(model, "fuse_unk", false);
  m->ignore_merges = flag(model, "ignore_merges", false);
  parse_normalizer(*m, j.value("normalizer", json()));
  parse_pre_tokenizer(*m, j.value("pre_tokenizer", json()));
  parse_decoder(*m, j.value("decoder", json()));
  parse_post_processor(*m, j.value("post_processor", json()));
  m->finalize();
  if (type == "Unigram") {
    const json unk = model.value("unk_id", json());
    if (unk.is_number_integer()) {
      const int64_t id = unk.get<int64_t>();
      if (id < 0 || static_cast<size_t>(id) >= m->pieces.size())
        bad(path, "model.unk_id", "is outside the vocabulary");
      m->unk_id = static_cast<int32_t>(id);
    } else if (!unk.is_null()) {
      bad(path, "model.unk_id", "must be an id or null");
    }
  } else if (model.contains("unk_token") && model["unk_token"].is_string()) {
    m->unk_id = m->index.count(model["unk_token"].get<std::string>())
                    ? m->index.at(model["unk_token"].get<std::string>())
                    : -1;
  }
  if (!m->prefix_ids.empty()) m->bos = m->prefix_ids.front();
  if (!m->suffix_ids.empty()) m->eos = m->suffix_ids.back();
  for (int32_t id : m->prefix_ids) m->check_id(id);
  for (int32_t id : m->suffix_ids) m->check_id(id);

  if (type == "BPE") {
    const json merges = model.value("merges", json::array());
    if (!merges.is_array()) bad(path, "model.merges", "must be an array");
    m->merges.reserve(merges.size());
    for (size_t r = 0; r < merges.size(); ++r) {
      const std::string field = "model.merges[" + std::to_string(r) + "]";
      const json& e = merges[r];
      if (e.is_array() && e.size() == 2) {  // newer format: ["a", "b"]
        add_merge(*m, str(e[0], path, field), str(e[1], path, field), r, field);
        continue;
      }
      const std::string& line = str(e, path, field);
      const size_t sp = line.find(' ', 1);
      if (sp == std::string::npos) bad(path, field, "is not two tokens separated by a space");
      add_merge(*m, line.substr(0, sp), line.substr(sp + 1), r, field);
    }
  }
  apply_config(*m, config_path);
  return m;
}

}  // namespace

std::vector<PreSplit> splits_from_json(const std::string& pre_tokenizer_json,
                                       const std::string& origin) {
  Tokenizer::Impl m;
  m.origin = origin;
  try {
    parse_pre_tokenizer(m, io::detail::parse_json(pre_tokenizer_json, origin, kComponent));
  } catch (const json::exception& e) {
    fail(ErrorCode::kFormat, kComponent, origin, ": malformed pre_tokenizer (", e.what(), ")");
  }
  return m.splits;
}

std::unique_ptr<Tokenizer::Impl> load_tokenizer_json(const std::string& path,
                                                     const std::string& config_path) {
  try {
    return load_tokenizer_json_checked(path, config_path);
  } catch (const json::exception& e) {
    // A field of an unexpected JSON type that no check above caught.
    fail(ErrorCode::kFormat, kComponent, path, ": malformed tokenizer.json (", e.what(), ")");
  }
}

namespace {
std::unique_ptr<Tokenizer::Impl> load_vocab_merges_checked(const std::string& vocab_path,
                                                           const std::string& merges_path,
                                                           const std::string& config_path) {
  auto m = std::make_unique<Tokenizer::Impl>();
  m->origin = vocab_path;
  const json vocab = read_json(vocab_path);
  m->id_limit = 2 * static_cast<int64_t>(vocab.is_object() ? vocab.size() : 0) + 1024;
  read_vocab(*m, vocab, "vocab");
  // The slow GPT-2 / Qwen2 tokenizers: byte-level BPE, their class picks the split regex.
  m->byte_level = true;
  PreSplit split;
  split.kind = SplitKind::kGpt2;
  if (!config_path.empty()) {
    const json cfg = read_json(config_path);
    const json cls_v = cfg.is_object() ? cfg.value("tokenizer_class", json("")) : json("");
    const std::string cls = cls_v.is_string() ? cls_v.get<std::string>() : "";
    if (cls.rfind("Qwen2", 0) == 0) {
      split.kind = SplitKind::kQwen2;
      m->norm_steps.push_back(NormStep::kNfc);
    }
    if (cfg.is_object()) m->byte_level_prefix_space = flag(cfg, "add_prefix_space", false);
  }
  m->splits.push_back(std::move(split));
  m->finalize();
  // GPT-2's vocab.json holds <|endoftext|> as an ordinary entry; HF registers it as the special
  // bos/eos/unk token, so it is split out of text and skipped when decoding.
  if (config_path.empty()) {
    if (auto it = m->index.find("<|endoftext|>"); it != m->index.end()) {
      AddedToken t;
      t.content = "<|endoftext|>";
      t.id = it->second;
      t.special = true;
      m->kinds[t.id] = TokenKind::kControl;
      m->added.push_back(t);
      m->bos = m->eos = t.id;
      m->finalize();
    }
  }

  std::istringstream lines(read_file(merges_path));
  std::string line;
  size_t rank = 0, line_no = 0;
  m->merges.reserve(m->pieces.size());
  while (std::getline(lines, line)) {
    ++line_no;
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (line.empty() || (line_no == 1 && line.rfind("#version", 0) == 0)) continue;
    const size_t sp = line.find(' ', 1);
    const std::string field = "line " + std::to_string(line_no);
    if (sp == std::string::npos) bad(merges_path, field, "is not two tokens separated by a space");
    add_merge(*m, line.substr(0, sp), line.substr(sp + 1), rank++, merges_path + " " + field);
  }
  apply_config(*m, config_path);
  return m;
}
}  // namespace

std::unique_ptr<Tokenizer::Impl> load_vocab_merges(const std::string& vocab_path,
                                                   const std::string& merges_path,
                                                   const std::string& config_path) {
  try {
    return load_vocab_merges_checked(vocab_path, merges_path, config_path);
  } catch (const json::exception& e) {
    fail(ErrorCode::kFormat, kComponent, vocab_path, ": malformed vocabulary (", e.what(), ")");
  }
}

}  // namespace af::tok::detail
