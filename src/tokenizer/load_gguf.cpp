// GGUF vocabularies (tokenizer.ggml.*), read the way llama.cpp's llama-vocab reads them.
#include "af/core/error.hpp"
#include "af/io/gguf.hpp"
#include "tokenizer/tokenizer_impl.hpp"

namespace af::tok::detail {
namespace {

const io::GgufArray& array_key(const io::GgufFile& g, const std::string& key) {
  const io::GgufValue* v = g.find(key);
  AF_CHECK(v != nullptr, ErrorCode::kFormat, kComponent, g.origin(), ": missing ", key);
  return v->as_array(key);
}

// Special ids are stored as uint32; 0xFFFFFFFF (and anything outside the vocabulary) means none.
int32_t optional_id(const io::GgufFile& g, const std::string& key, size_t n, int32_t fallback) {
  const io::GgufValue* v = g.find(key);
  if (v == nullptr) return fallback;
  const int64_t id = v->as_int(key);
  return (id >= 0 && static_cast<size_t>(id) < n) ? static_cast<int32_t>(id) : -1;
}

bool optional_bool(const io::GgufFile& g, const std::string& key, bool fallback) {
  const io::GgufValue* v = g.find(key);
  return v == nullptr ? fallback : v->as_bool(key);
}

std::vector<PreSplit> pre_tokenizer_for(const std::string& pre, const std::string& origin) {
  std::vector<PreSplit> steps = splits_for_gguf_pre(pre, origin);
  AF_CHECK(!steps.empty(), ErrorCode::kUnsupported, kComponent, origin, ": tokenizer.ggml.pre \"",
           pre, "\" is not supported");
  return steps;
}

}  // namespace

std::unique_ptr<Tokenizer::Impl> load_gguf_vocab(const io::GgufFile& g) {
  auto m = std::make_unique<Tokenizer::Impl>();
  m->origin = g.origin();
  const io::GgufValue* model_v = g.find("tokenizer.ggml.model");
  AF_CHECK(model_v != nullptr, ErrorCode::kFormat, kComponent, g.origin(),
           ": no tokenizer.ggml.model (the file holds no vocabulary)");
  const std::string& model = model_v->as_string("tokenizer.ggml.model");

  const std::string tokens_key = "tokenizer.ggml.tokens";
  const io::GgufArray& tokens = array_key(g, tokens_key);
  const size_t n = tokens.size();
  m->pieces.reserve(n);
  for (size_t i = 0; i < n; ++i) m->pieces.emplace_back(tokens.string_at(i, tokens_key));

  if (const io::GgufValue* tt = g.find("tokenizer.ggml.token_type")) {
    const std::string key = "tokenizer.ggml.token_type";
    const io::GgufArray& types = tt->as_array(key);
    AF_CHECK(types.size() == n, ErrorCode::kFormat, kComponent, g.origin(), ": ", key, " has ",
             types.size(), " entries for ", n, " tokens");
    m->kinds.reserve(n);
    for (size_t i = 0; i < n; ++i) {
      const int64_t t = types.int_at(i, key);
      AF_CHECK(t >= 1 && t <= 6, ErrorCode::kFormat, kComponent, g.origin(), ": ", key, " value ",
               t, " is not a known token type");
      m->kinds.push_back(static_cast<TokenKind>(t));
    }
  } else {
    m->kinds.assign(n, TokenKind::kNormal);
  }

  m->unk_id = optional_id(g, "tokenizer.ggml.unknown_token_id", n, -1);
  m->bos = optional_id(g, "tokenizer.ggml.bos_token_id", n, -1);
  m->eos = optional_id(g, "tokenizer.ggml.eos_token_id", n, -1);

  bool add_bos_default = false;
  if (model == "llama") {
    // llama.cpp's SPM session: spaces become "▁", one "▁" before the text (and after each
    // special token), merges by piece score, unknown pieces spelled as <0xXX> bytes.
    m->order = MergeOrder::kScore;
    const std::string key = "tokenizer.ggml.scores";
    const io::GgufArray& scores = array_key(g, key);
    AF_CHECK(scores.size() == n, ErrorCode::kFormat, kComponent, g.origin(), ": ", key, " has ",
             scores.size(), " entries for ", n, " tokens");
    m->scores.reserve(n);
    for (size_t i = 0; i < n; ++i) m->scores.push_back(static_cast<float>(scores.float_at(i, key)));
    m->metaspace = true;
    const bool space_prefix = optional_bool(g, "tokenizer.ggml.add_space_prefix", true);
    m->prepend = space_prefix ? PrependScheme::kAlways : PrependScheme::kNever;
    m->strip_leading_space = space_prefix;
    m->byte_fallback = true;
    add_bos_default = true;
  } else if (model == "gpt2") {
    m->order = MergeOrder::kRank;
    m->byte_level = true;
    const io::GgufValue* pre = g.find("tokenizer.ggml.pre");
    const std::string pre_name = pre ? pre->as_string("tokenizer.ggml.pre") : "gpt-2";
    m->splits = pre_tokenizer_for(pre_name, g.origin());
    // As llama.cpp: these vocabularies emit a pre-token found whole in the vocabulary as is.
    for (const char* name : {"llama3", "llama-v3", "llama-bpe", "falcon3", "tekken"})
      if (pre_name == name) m->ignore_merges = true;
  } else if (model == "bert") {
    // llama.cpp's WPM vocabularies store a word-initial piece as "▁piece" and a continuation
    // as the bare text ("##" removed). Text goes through BERT's basic tokenizer (clean,
    // CJK spacing, accents stripped, lower case, split at white space and punctuation), as
    // the HF tokenizers these vocabularies come from do; add_special puts [CLS] ... [SEP].
    m->model = ModelKind::kWordPiece;
    m->word_prefix = "\xE2\x96\x81";
    m->continuation_prefix.clear();
    m->max_word_chars = SIZE_MAX;
    m->norm_steps = {NormStep::kBertCleanText, NormStep::kBertChinese, NormStep::kBertStripAccents,
                     NormStep::kLowercase};
    PreSplit ws, punct;
    ws.kind = SplitKind::kWhiteSpace;
    ws.behavior = SplitBehavior::kRemoved;
    punct.kind = SplitKind::kPunctuation;
    m->splits = {ws, punct};
    m->wordpiece_decoder = true;
    const int32_t cls = optional_id(g, "tokenizer.ggml.cls_token_id", n, m->bos);
    const int32_t sep = optional_id(g, "tokenizer.ggml.seperator_token_id", n, m->eos);
    if (cls >= 0) m->bos = cls;
    if (sep >= 0) m->eos = sep;
    add_bos_default = true;
    if (optional_bool(g, "tokenizer.ggml.add_eos_token", true) && m->eos >= 0)
      m->suffix_ids.push_back(m->eos);
  } else {
    fail(ErrorCode::kUnsupported, kComponent, g.origin(), ": tokenizer.ggml.model \"", model,
         "\" is not supported (supported: llama, gpt2, bert)");
  }

  // Control, user-defined and unknown tokens are matched in the text before the model, as
  // llama.cpp's tokenizer_st_partition does; only user-defined ones without parse_special.
  for (size_t id = 0; id < n; ++id) {
    const TokenKind k = m->kinds[id];
    if (m->pieces[id].empty()) continue;
    if (k == TokenKind::kControl || k == TokenKind::kUnknown || k == TokenKind::kUserDefined) {
      AddedToken t;
      t.content = m->pieces[id];
      t.id = static_cast<int32_t>(id);
      t.special = k != TokenKind::kUserDefined;
      m->added.push_back(std::move(t));
    }
  }

  if (optional_bool(g, "tokenizer.ggml.add_bos_token", add_bos_default) && m->bos >= 0)
    m->prefix_ids.push_back(m->bos);
  if (model != "bert" && optional_bool(g, "tokenizer.ggml.add_eos_token", false) && m->eos >= 0)
    m->suffix_ids.push_back(m->eos);

  m->finalize();

  if (model == "gpt2") {
    const std::string key = "tokenizer.ggml.merges";
    const io::GgufArray& merges = array_key(g, key);
    m->merges.reserve(merges.size());
    for (size_t r = 0; r < merges.size(); ++r) {
      const std::string line(merges.string_at(r, key));
      const size_t sp = line.find(' ', 1);
      AF_CHECK(sp != std::string::npos, ErrorCode::kFormat, kComponent, g.origin(), ": ", key, "[",
               r, "] \"", line, "\" is not two tokens");
      const std::string a = line.substr(0, sp), b = line.substr(sp + 1);
      auto ia = m->index.find(a), ib = m->index.find(b), iab = m->index.find(a + b);
      AF_CHECK(ia != m->index.end() && ib != m->index.end() && iab != m->index.end(),
               ErrorCode::kFormat, kComponent, g.origin(), ": ", key, "[", r, "] \"", line,
               "\" names tokens outside the vocabulary");
      m->merges.emplace((uint64_t(uint32_t(ia->second)) << 32) | uint32_t(ib->second),
                        std::make_pair(static_cast<int32_t>(r), iab->second));
    }
  }
  return m;
}

}  // namespace af::tok::detail
