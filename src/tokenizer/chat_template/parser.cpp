// Lexer and recursive-descent parser for the Jinja2 subset chat templates use, with the
// whitespace rules of transformers' environment: trim_blocks, lstrip_blocks,
// keep_trailing_newline=False, and newlines normalised to "\n" as Jinja does.
#include <cstring>
#include <set>

#include "af/core/error.hpp"
#include "tokenizer/chat_template/ast.hpp"

namespace af::tok::jinja {
namespace {

constexpr int kMaxNesting = 128;

enum class Tok {
  kText,
  kVarBegin,
  kVarEnd,
  kBlockBegin,
  kBlockEnd,
  kName,
  kString,
  kInt,
  kFloat,
  kOp,
  kEof
};

struct Token {
  Tok type;
  std::string text;
  int64_t integer = 0;
  double number = 0;
  Location loc;
};

[[noreturn]] void syntax_error(const std::string& origin, Location loc, const std::string& what) {
  fail(ErrorCode::kFormat, "template", origin, ":", loc.line, ":", loc.column,
       ": syntax error: ", what);
}

bool is_space(char c) {
  return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v';
}
bool is_name_start(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_'; }
bool is_digit(char c) { return c >= '0' && c <= '9'; }
bool is_name_char(char c) { return is_name_start(c) || is_digit(c); }

std::string normalize_newlines(const std::string& s) {
  std::string out;
  out.reserve(s.size());
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '\r') {
      out += '\n';
      if (i + 1 < s.size() && s[i + 1] == '\n') ++i;
    } else {
      out += s[i];
    }
  }
  if (!out.empty() && out.back() == '\n') out.pop_back();
  return out;
}

class Lexer {
 public:
  Lexer(const std::string& src, const std::string& origin) : src_(src), origin_(origin) {}

  std::vector<Token> run() {
    size_t pos = 0;
    while (pos < src_.size()) {
      const size_t start = find_tag(pos);
      std::string text = src_.substr(pos, start - pos);
      if (start == src_.size()) {
        push_text(std::move(text), pos);
        break;
      }
      const char kind = src_[start + 1];  // '{', '%' or '#'
      const char modifier = start + 2 < src_.size() ? src_[start + 2] : '\0';
      if (modifier == '-') {
        while (!text.empty() && is_space(text.back())) text.pop_back();
      } else if (kind != '{' && modifier != '+') {
        const size_t line_start = text.rfind('\n') == std::string::npos ? 0 : text.rfind('\n') + 1;
        if (line_start > 0 || pos == 0 || src_[pos - 1] == '\n') {
          if (text.find_first_not_of(" \t", line_start) == std::string::npos)
            text.resize(line_start);
        }
      }
      push_text(std::move(text), pos);
      if (kind == '#') {
        pos = lex_comment(start);
      } else if (kind == '%' && is_raw(start)) {
        pos = lex_raw(start);
      } else {
        pos = lex_tag(start, kind == '%');
      }
    }
    tokens_.push_back(Token{Tok::kEof, "", 0, 0, location(src_.size())});
    return std::move(tokens_);
  }

 private:
  Location location(size_t offset) {
    // Positions are found in increasing order, so lines are counted incrementally.
    while (line_scan_ < offset && line_scan_ < src_.size()) {
      if (src_[line_scan_] == '\n') {
        ++line_;
        line_begin_ = line_scan_ + 1;
      }
      ++line_scan_;
    }
    return Location{line_, static_cast<int>(offset - line_begin_) + 1};
  }

  size_t find_tag(size_t pos) const {
    for (size_t i = pos; i + 1 < src_.size(); ++i) {
      if (src_[i] == '{' && (src_[i + 1] == '{' || src_[i + 1] == '%' || src_[i + 1] == '#'))
        return i;
    }
    return src_.size();
  }

  void push_text(std::string text, size_t pos) {
    if (text.empty()) return;
    tokens_.push_back(Token{Tok::kText, std::move(text), 0, 0, location(pos)});
  }

  size_t skip_spaces(size_t p) const {
    while (p < src_.size() && is_space(src_[p])) ++p;
    return p;
  }

  // After a tag's closing delimiter: "-" strips all following whitespace; a block or comment
  // tag without "+" eats one newline (trim_blocks).
  size_t after_tag(size_t end_pos, char modifier, bool trim) const {
    if (modifier == '-') return skip_spaces(end_pos);
    if (trim && modifier != '+' && end_pos < src_.size() && src_[end_pos] == '\n')
      return end_pos + 1;
    return end_pos;
  }

  size_t lex_comment(size_t start) {
    const size_t end = src_.find("#}", start + 2);
    if (end == std::string::npos) syntax_error(origin_, location(start), "unterminated comment");
    const char modifier = end > start + 2 && src_[end - 1] == '-' ? '-' : '\0';
    return after_tag(end + 2, modifier, true);
  }

  // "{%[-+]? raw [-]?%}" at start?
  bool is_raw(size_t start) const {
    size_t p = start + 2;
    if (p < src_.size() && (src_[p] == '-' || src_[p] == '+')) ++p;
    p = skip_spaces(p);
    if (src_.compare(p, 3, "raw") != 0) return false;
    p = skip_spaces(p + 3);
    return src_.compare(p, 2, "%}") == 0 || src_.compare(p, 3, "-%}") == 0;
  }

  size_t lex_raw(size_t start) {
    size_t p = skip_spaces(start + 2 + (src_[start + 2] == '-' || src_[start + 2] == '+' ? 1 : 0));
    p = skip_spaces(p + 3);
    size_t content = src_[p] == '-' ? skip_spaces(p + 3) : p + 2;
    for (size_t q = src_.find("{%", content); q != std::string::npos; q = src_.find("{%", q + 2)) {
      size_t r = q + 2;
      const char open_mod = r < src_.size() && (src_[r] == '-' || src_[r] == '+') ? src_[r] : '\0';
      if (open_mod) ++r;
      r = skip_spaces(r);
      if (src_.compare(r, 6, "endraw") != 0) continue;
      r = skip_spaces(r + 6);
      char close_mod = '\0';
      if (r < src_.size() && (src_[r] == '-' || src_[r] == '+')) close_mod = src_[r++];
      if (src_.compare(r, 2, "%}") != 0) continue;
      std::string text = src_.substr(content, q - content);
      if (open_mod == '-') {
        while (!text.empty() && is_space(text.back())) text.pop_back();
      }
      push_text(std::move(text), content);
      return after_tag(r + 2, close_mod, true);
    }
    syntax_error(origin_, location(start), "missing {% endraw %}");
  }

  size_t lex_tag(size_t start, bool block) {
    tokens_.push_back(Token{block ? Tok::kBlockBegin : Tok::kVarBegin, "", 0, 0, location(start)});
    size_t p = start + 2;
    if (p < src_.size() && (src_[p] == '-' || (block && src_[p] == '+'))) ++p;
    int depth = 0;
    while (true) {
      p = skip_spaces(p);
      if (p >= src_.size()) {
        syntax_error(origin_, location(start),
                     block ? "unexpected end of template, expected '%}'"
                           : "unexpected end of template, expected '}}'");
      }
      if (depth == 0) {
        const char* close = block ? "%}" : "}}";
        char modifier = '\0';
        size_t q = p;
        if (src_[q] == '-' || (block && src_[q] == '+')) modifier = src_[q++];
        if (src_.compare(q, 2, close) == 0) {
          tokens_.push_back(Token{block ? Tok::kBlockEnd : Tok::kVarEnd, "", 0, 0, location(p)});
          return after_tag(q + 2, modifier, block);
        }
      }
      const Location loc = location(p);
      const char c = src_[p];
      if (is_name_start(c)) {
        size_t e = p;
        while (e < src_.size() && is_name_char(src_[e])) ++e;
        tokens_.push_back(Token{Tok::kName, src_.substr(p, e - p), 0, 0, loc});
        p = e;
      } else if (is_digit(c)) {
        p = lex_number(p, loc);
      } else if (c == '\'' || c == '"') {
        p = lex_string(p, loc);
      } else {
        static const char* const kOps[] = {"//", "**", "==", "!=", "<=", ">=", "+", "-", "*",
                                           "/",  "%",  "~",  "<",  ">",  "=",  "(", ")", "[",
                                           "]",  "{",  "}",  ",",  ".",  ":",  "|"};
        const char* found = nullptr;
        for (const char* op : kOps) {
          if (src_.compare(p, std::strlen(op), op) == 0) {
            found = op;
            break;
          }
        }
        if (!found) syntax_error(origin_, loc, std::string("unexpected character '") + c + "'");
        if (*found == '(' || *found == '[' || *found == '{') ++depth;
        if ((*found == ')' || *found == ']' || *found == '}') && depth > 0) --depth;
        tokens_.push_back(Token{Tok::kOp, found, 0, 0, loc});
        p += std::strlen(found);
      }
    }
  }

  size_t lex_number(size_t p, Location loc) {
    std::string digits;
    bool is_float = false;
    auto take_digits = [&] {
      while (p < src_.size() && (is_digit(src_[p]) || (src_[p] == '_' && p + 1 < src_.size() &&
                                                       is_digit(src_[p + 1])))) {
        if (src_[p] != '_') digits += src_[p];
        ++p;
      }
    };
    take_digits();
    if (p + 1 < src_.size() && src_[p] == '.' && is_digit(src_[p + 1])) {
      is_float = true;
      digits += src_[p++];
      take_digits();
    }
    if (p < src_.size() && (src_[p] == 'e' || src_[p] == 'E')) {
      size_t q = p + 1;
      if (q < src_.size() && (src_[q] == '+' || src_[q] == '-')) ++q;
      if (q < src_.size() && is_digit(src_[q])) {
        is_float = true;
        digits += 'e';
        digits.append(src_, p + 1, q - p - 1);
        p = q;
        take_digits();
      }
    }
    Token t{is_float ? Tok::kFloat : Tok::kInt, digits, 0, 0, loc};
    if (is_float) {
      t.number = std::strtod(digits.c_str(), nullptr);
    } else {
      errno = 0;
      const unsigned long long v = std::strtoull(digits.c_str(), nullptr, 10);
      if (errno == ERANGE || v > static_cast<unsigned long long>(INT64_MAX)) {
        syntax_error(origin_, loc, "integer literal too large");
      }
      t.integer = static_cast<int64_t>(v);
    }
    tokens_.push_back(std::move(t));
    return p;
  }

  static int hex_value(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
  }

  // Python's unicode-escape rules, as Jinja applies them to string literals.
  size_t lex_string(size_t p, Location loc) {
    const char quote = src_[p++];
    std::string out;
    while (true) {
      if (p >= src_.size()) syntax_error(origin_, loc, "unterminated string literal");
      const char c = src_[p];
      if (c == quote) {
        ++p;
        break;
      }
      if (c != '\\' || p + 1 >= src_.size()) {
        out += c;
        ++p;
        continue;
      }
      const char e = src_[p + 1];
      p += 2;
      switch (e) {
        case '\n':
          break;
        case '\\':
          out += '\\';
          break;
        case '\'':
          out += '\'';
          break;
        case '"':
          out += '"';
          break;
        case 'a':
          out += '\a';
          break;
        case 'b':
          out += '\b';
          break;
        case 'f':
          out += '\f';
          break;
        case 'n':
          out += '\n';
          break;
        case 'r':
          out += '\r';
          break;
        case 't':
          out += '\t';
          break;
        case 'v':
          out += '\v';
          break;
        case 'x':
        case 'u':
        case 'U': {
          const int n = e == 'x' ? 2 : e == 'u' ? 4 : 8;
          uint32_t v = 0;
          for (int k = 0; k < n; ++k) {
            const int h = p < src_.size() ? hex_value(src_[p]) : -1;
            if (h < 0)
              syntax_error(origin_, loc,
                           std::string("truncated \\") + e + " escape in string literal");
            v = v * 16 + static_cast<uint32_t>(h);
            ++p;
          }
          if (v > 0x10FFFF) syntax_error(origin_, loc, "escape beyond U+10FFFF in string literal");
          append_utf8(out, v);
          break;
        }
        default:
          if (e >= '0' && e <= '7') {
            uint32_t v = static_cast<uint32_t>(e - '0');
            for (int k = 0; k < 2 && p < src_.size() && src_[p] >= '0' && src_[p] <= '7'; ++k)
              v = v * 8 + static_cast<uint32_t>(src_[p++] - '0');
            append_utf8(out, v);
          } else {
            out += '\\';
            out += e;
          }
      }
    }
    tokens_.push_back(Token{Tok::kString, std::move(out), 0, 0, loc});
    return p;
  }

  const std::string& src_;
  const std::string& origin_;
  std::vector<Token> tokens_;
  size_t line_scan_ = 0, line_begin_ = 0;
  int line_ = 1;
};

class Parser {
 public:
  Parser(std::vector<Token> tokens, const std::string& origin)
      : toks_(std::move(tokens)), origin_(origin) {}

  StmtList parse_template() {
    std::string end;
    StmtList body = parse_body({}, &end);
    return body;
  }

 private:
  struct DepthGuard {
    explicit DepthGuard(Parser& p) : parser(p) {
      if (++parser.depth_ > kMaxNesting)
        parser.error(parser.cur().loc, "nesting deeper than 128 levels");
    }
    ~DepthGuard() { --parser.depth_; }
    Parser& parser;
  };

  const Token& cur() const { return toks_[pos_]; }
  const Token& peek(size_t n = 1) const { return toks_[std::min(pos_ + n, toks_.size() - 1)]; }
  void advance() {
    if (pos_ + 1 < toks_.size()) ++pos_;
  }
  [[noreturn]] void error(Location loc, const std::string& what) const {
    syntax_error(origin_, loc, what);
  }

  static std::string describe(const Token& t) {
    switch (t.type) {
      case Tok::kText:
        return "template text";
      case Tok::kVarBegin:
        return "'{{'";
      case Tok::kVarEnd:
        return "'}}'";
      case Tok::kBlockBegin:
        return "'{%'";
      case Tok::kBlockEnd:
        return "'%}'";
      case Tok::kEof:
        return "end of template";
      case Tok::kString:
        return "string literal";
      default:
        return "'" + t.text + "'";
    }
  }

  bool is_op(const char* op) const { return cur().type == Tok::kOp && cur().text == op; }
  bool is_name(const char* name) const { return cur().type == Tok::kName && cur().text == name; }
  bool accept_op(const char* op) {
    if (!is_op(op)) return false;
    advance();
    return true;
  }
  bool accept_name(const char* name) {
    if (!is_name(name)) return false;
    advance();
    return true;
  }
  void expect_op(const char* op) {
    if (!accept_op(op))
      error(cur().loc, std::string("expected '") + op + "', got " + describe(cur()));
  }
  std::string expect_name() {
    if (cur().type != Tok::kName) error(cur().loc, "expected a name, got " + describe(cur()));
    std::string n = cur().text;
    advance();
    return n;
  }
  void expect_block_end() {
    if (cur().type != Tok::kBlockEnd) error(cur().loc, "expected '%}', got " + describe(cur()));
    advance();
  }

  ExprPtr make(Expr::Kind kind, Location loc) {
    auto e = std::make_unique<Expr>();
    e->kind = kind;
    e->loc = loc;
    return e;
  }

  // Statements until a block tag whose keyword is in `ends` (consumed up to the keyword; its
  // name is stored in *end). With empty `ends`, runs to the end of the template.
  StmtList parse_body(const std::set<std::string>& ends, std::string* end) {
    DepthGuard guard(*this);
    StmtList out;
    while (true) {
      const Token& t = cur();
      if (t.type == Tok::kEof) {
        if (!ends.empty()) {
          std::string expected;
          for (const auto& e : ends) expected += (expected.empty() ? "" : " or ") + ("'" + e + "'");
          error(t.loc, "unexpected end of template, expected " + expected);
        }
        return out;
      }
      if (t.type == Tok::kText) {
        auto s = std::make_unique<Stmt>();
        s->kind = Stmt::Kind::kText;
        s->loc = t.loc;
        s->text = t.text;
        out.push_back(std::move(s));
        advance();
      } else if (t.type == Tok::kVarBegin) {
        auto s = std::make_unique<Stmt>();
        s->kind = Stmt::Kind::kOutput;
        s->loc = t.loc;
        advance();
        s->expr = parse_tuple(true);
        if (cur().type != Tok::kVarEnd) error(cur().loc, "expected '}}', got " + describe(cur()));
        advance();
        out.push_back(std::move(s));
      } else if (t.type == Tok::kBlockBegin) {
        const Token& kw = peek();
        if (kw.type != Tok::kName) error(kw.loc, "expected a tag name, got " + describe(kw));
        if (ends.count(kw.text)) {
          *end = kw.text;
          advance();
          advance();
          return out;
        }
        advance();
        out.push_back(parse_statement());
      } else {
        error(t.loc, "unexpected " + describe(t));
      }
    }
  }

  std::unique_ptr<Stmt> parse_statement() {
    const Token kw = cur();
    advance();
    auto s = std::make_unique<Stmt>();
    s->loc = kw.loc;
    const std::string& k = kw.text;
    std::string end;
    if (k == "if") {
      s->kind = Stmt::Kind::kIf;
      ExprPtr cond = parse_expression(true);
      expect_block_end();
      while (true) {
        StmtList body = parse_body({"elif", "else", "endif"}, &end);
        s->branches.emplace_back(std::move(cond), std::move(body));
        if (end == "elif") {
          cond = parse_expression(true);
          expect_block_end();
        } else if (end == "else") {
          expect_block_end();
          s->branches.emplace_back(nullptr, parse_body({"endif"}, &end));
          expect_block_end();
          break;
        } else {
          expect_block_end();
          break;
        }
      }
    } else if (k == "for") {
      s->kind = Stmt::Kind::kFor;
      const size_t names_before = names_seen_.size();
      s->targets = parse_targets();
      if (!accept_name("in")) error(cur().loc, "expected 'in', got " + describe(cur()));
      s->expr = parse_tuple(false);
      if (accept_name("if")) s->cond = parse_expression(true);
      if (is_name("recursive")) error(cur().loc, "recursive loops are not supported");
      expect_block_end();
      ++loop_depth_;
      s->body = parse_body({"else", "endfor"}, &end);
      --loop_depth_;
      s->uses_loop = false;
      for (size_t i = names_before; i < names_seen_.size(); ++i)
        s->uses_loop = s->uses_loop || names_seen_[i] == "loop";
      expect_block_end();
      if (end == "else") {
        s->else_body = parse_body({"endfor"}, &end);
        expect_block_end();
      }
    } else if (k == "set") {
      const Location target_loc = cur().loc;
      std::vector<std::string> targets = parse_targets();
      if (targets.size() == 1 && accept_op(".")) {
        s->kind = Stmt::Kind::kSet;
        s->targets = targets;
        s->attr = expect_name();
        expect_op("=");
        s->expr = parse_tuple(true);
        expect_block_end();
      } else if (accept_op("=")) {
        s->kind = Stmt::Kind::kSet;
        s->targets = targets;
        s->expr = parse_tuple(true);
        expect_block_end();
      } else {
        if (targets.size() != 1) error(target_loc, "a block set assigns one name");
        s->kind = Stmt::Kind::kSetBlock;
        s->targets = targets;
        while (accept_op("|")) s->filters.push_back(parse_filter(nullptr));
        expect_block_end();
        s->body = parse_body({"endset"}, &end);
        expect_block_end();
      }
    } else if (k == "macro") {
      s->kind = Stmt::Kind::kMacro;
      s->text = expect_name();
      parse_params(*s);
      expect_block_end();
      const int outer_loops = loop_depth_;
      loop_depth_ = 0;
      const size_t names_before = names_seen_.size();
      s->body = parse_body({"endmacro"}, &end);
      loop_depth_ = outer_loops;
      for (size_t i = names_before; i < names_seen_.size(); ++i) {
        s->uses_varargs = s->uses_varargs || names_seen_[i] == "varargs";
        s->uses_kwargs = s->uses_kwargs || names_seen_[i] == "kwargs";
      }
      if (cur().type == Tok::kName) advance();  // {% endmacro name %}
      expect_block_end();
    } else if (k == "call") {
      s->kind = Stmt::Kind::kCallBlock;
      if (is_op("(")) parse_params(*s);
      s->expr = parse_expression(true);
      if (s->expr->kind != Expr::Kind::kCall) error(s->expr->loc, "expected a call after 'call'");
      expect_block_end();
      s->body = parse_body({"endcall"}, &end);
      expect_block_end();
    } else if (k == "filter") {
      s->kind = Stmt::Kind::kFilterBlock;
      do {
        s->filters.push_back(parse_filter(nullptr));
      } while (accept_op("|"));
      expect_block_end();
      s->body = parse_body({"endfilter"}, &end);
      expect_block_end();
    } else if (k == "generation") {
      s->kind = Stmt::Kind::kScope;
      expect_block_end();
      s->body = parse_body({"endgeneration"}, &end);
      expect_block_end();
    } else if (k == "break" || k == "continue") {
      if (loop_depth_ <= 0) error(kw.loc, "'" + k + "' outside a loop");
      s->kind = k == "break" ? Stmt::Kind::kBreak : Stmt::Kind::kContinue;
      expect_block_end();
    } else if (k == "include" || k == "extends" || k == "import" || k == "from" || k == "block" ||
               k == "with" || k == "do" || k == "autoescape" || k == "trans") {
      error(kw.loc, "the '" + k + "' tag is not supported in chat templates");
    } else {
      error(kw.loc, "unknown tag '" + k + "'");
    }
    return s;
  }

  std::vector<std::string> parse_targets() {
    std::vector<std::string> names;
    const bool paren = accept_op("(");
    do {
      if (paren && is_op(")")) break;
      names.push_back(expect_name());
    } while (accept_op(","));
    if (paren) expect_op(")");
    return names;
  }

  void parse_params(Stmt& s) {
    expect_op("(");
    while (!is_op(")")) {
      s.params.push_back(expect_name());
      s.defaults.push_back(accept_op("=") ? parse_expression(true) : nullptr);
      if (!accept_op(",")) break;
    }
    expect_op(")");
  }

  // expr or a bare tuple "a, b" (statement level).
  ExprPtr parse_tuple(bool with_condition) {
    const Location loc = cur().loc;
    ExprPtr first = parse_expression(with_condition);
    if (!is_op(",")) return first;
    auto tuple = make(Expr::Kind::kTuple, loc);
    tuple->args.push_back(std::move(first));
    while (accept_op(",")) {
      if (cur().type == Tok::kBlockEnd || cur().type == Tok::kVarEnd || is_op(")")) break;
      tuple->args.push_back(parse_expression(with_condition));
    }
    return tuple;
  }

  ExprPtr parse_expression(bool with_condition) {
    DepthGuard guard(*this);
    if (!with_condition) return parse_or();
    ExprPtr expr = parse_or();
    while (is_name("if")) {
      const Location loc = cur().loc;
      advance();
      auto cond = make(Expr::Kind::kConditional, loc);
      cond->args.push_back(parse_or());
      cond->args.push_back(std::move(expr));
      cond->args.push_back(accept_name("else") ? parse_expression(true) : nullptr);
      // args: condition, then-value, else-value
      expr = std::move(cond);
    }
    return expr;
  }

  ExprPtr binary(const std::string& op, ExprPtr a, ExprPtr b, Location loc) {
    auto e = make(Expr::Kind::kBinary, loc);
    e->name = op;
    e->args.push_back(std::move(a));
    e->args.push_back(std::move(b));
    return e;
  }

  ExprPtr parse_or() {
    ExprPtr left = parse_and();
    while (is_name("or")) {
      const Location loc = cur().loc;
      advance();
      left = binary("or", std::move(left), parse_and(), loc);
    }
    return left;
  }

  ExprPtr parse_and() {
    ExprPtr left = parse_not();
    while (is_name("and")) {
      const Location loc = cur().loc;
      advance();
      left = binary("and", std::move(left), parse_not(), loc);
    }
    return left;
  }

  ExprPtr parse_not() {
    DepthGuard guard(*this);
    if (is_name("not")) {
      auto e = make(Expr::Kind::kUnary, cur().loc);
      advance();
      e->name = "not";
      e->args.push_back(parse_not());
      return e;
    }
    return parse_compare();
  }

  ExprPtr parse_compare() {
    const Location loc = cur().loc;
    ExprPtr first = parse_math1();
    ExprPtr cmp;
    while (true) {
      std::string op;
      if (cur().type == Tok::kOp &&
          (cur().text == "==" || cur().text == "!=" || cur().text == "<" || cur().text == ">" ||
           cur().text == "<=" || cur().text == ">=")) {
        op = cur().text;
        advance();
      } else if (is_name("in")) {
        op = "in";
        advance();
      } else if (is_name("not") && peek().type == Tok::kName && peek().text == "in") {
        op = "notin";
        advance();
        advance();
      } else {
        break;
      }
      if (!cmp) {
        cmp = make(Expr::Kind::kCompare, loc);
        cmp->args.push_back(std::move(first));
      }
      cmp->ops.push_back(op);
      cmp->args.push_back(parse_math1());
    }
    return cmp ? std::move(cmp) : std::move(first);
  }

  ExprPtr parse_math1() {
    ExprPtr left = parse_concat();
    while (is_op("+") || is_op("-")) {
      const Token op = cur();
      advance();
      left = binary(op.text, std::move(left), parse_concat(), op.loc);
    }
    return left;
  }

  ExprPtr parse_concat() {
    ExprPtr left = parse_math2();
    while (is_op("~")) {
      const Location loc = cur().loc;
      advance();
      left = binary("~", std::move(left), parse_math2(), loc);
    }
    return left;
  }

  ExprPtr parse_math2() {
    ExprPtr left = parse_pow();
    while (is_op("*") || is_op("/") || is_op("//") || is_op("%")) {
      const Token op = cur();
      advance();
      left = binary(op.text, std::move(left), parse_pow(), op.loc);
    }
    return left;
  }

  ExprPtr parse_pow() {
    ExprPtr left = parse_unary(true);
    while (is_op("**")) {
      const Location loc = cur().loc;
      advance();
      left = binary("**", std::move(left), parse_unary(true), loc);
    }
    return left;
  }

  ExprPtr parse_unary(bool with_filter) {
    DepthGuard guard(*this);
    ExprPtr node;
    if (is_op("-") || is_op("+")) {
      node = make(Expr::Kind::kUnary, cur().loc);
      node->name = cur().text;
      advance();
      node->args.push_back(parse_unary(false));
    } else {
      node = parse_primary();
    }
    node = parse_postfix(std::move(node));
    if (with_filter) node = parse_filter_expr(std::move(node));
    return node;
  }

  ExprPtr parse_primary() {
    const Token& t = cur();
    const Location loc = t.loc;
    if (t.type == Tok::kName) {
      auto e = make(Expr::Kind::kLiteral, loc);
      if (t.text == "true" || t.text == "True") {
        e->value = Value::from_bool(true);
      } else if (t.text == "false" || t.text == "False") {
        e->value = Value::from_bool(false);
      } else if (t.text == "none" || t.text == "None") {
        e->value = Value::none();
      } else {
        e->kind = Expr::Kind::kName;
        e->name = t.text;
        if (t.text == "varargs" || t.text == "kwargs" || t.text == "loop")
          names_seen_.push_back(t.text);
      }
      advance();
      return e;
    }
    if (t.type == Tok::kString) {
      std::string s;
      while (cur().type == Tok::kString) {
        s += cur().text;
        advance();
      }
      auto e = make(Expr::Kind::kLiteral, loc);
      e->value = Value::from_string(std::move(s));
      return e;
    }
    if (t.type == Tok::kInt || t.type == Tok::kFloat) {
      auto e = make(Expr::Kind::kLiteral, loc);
      e->value = t.type == Tok::kInt ? Value::from_int(t.integer) : Value::from_float(t.number);
      advance();
      return e;
    }
    if (accept_op("(")) {
      if (accept_op(")")) return make(Expr::Kind::kTuple, loc);
      ExprPtr first = parse_expression(true);
      if (!is_op(",")) {
        expect_op(")");
        return first;
      }
      auto tuple = make(Expr::Kind::kTuple, loc);
      tuple->args.push_back(std::move(first));
      while (accept_op(",")) {
        if (is_op(")")) break;
        tuple->args.push_back(parse_expression(true));
      }
      expect_op(")");
      return tuple;
    }
    if (accept_op("[")) {
      auto list = make(Expr::Kind::kList, loc);
      while (!is_op("]")) {
        list->args.push_back(parse_expression(true));
        if (!accept_op(",")) break;
      }
      expect_op("]");
      return list;
    }
    if (accept_op("{")) {
      auto dict = make(Expr::Kind::kDict, loc);
      while (!is_op("}")) {
        dict->args.push_back(parse_expression(true));
        expect_op(":");
        dict->args.push_back(parse_expression(true));
        if (!accept_op(",")) break;
      }
      expect_op("}");
      return dict;
    }
    error(loc, "unexpected " + describe(t));
  }

  void parse_call_args(Expr& call) {
    expect_op("(");
    while (!is_op(")")) {
      if (is_op("*") || is_op("**"))
        error(cur().loc, "*args / **kwargs in calls are not supported");
      if (cur().type == Tok::kName && peek().type == Tok::kOp && peek().text == "=") {
        std::string key = cur().text;
        advance();
        advance();
        call.keyword.emplace_back(std::move(key), parse_expression(true));
      } else {
        if (!call.keyword.empty()) error(cur().loc, "positional argument follows keyword argument");
        call.args.push_back(parse_expression(true));
      }
      if (!accept_op(",")) break;
    }
    expect_op(")");
  }

  ExprPtr parse_postfix(ExprPtr node) {
    while (true) {
      const Location loc = cur().loc;
      if (accept_op(".")) {
        auto e = make(Expr::Kind::kGetAttr, loc);
        if (cur().type == Tok::kInt) {
          e->kind = Expr::Kind::kGetItem;
          auto index = make(Expr::Kind::kLiteral, cur().loc);
          index->value = Value::from_int(cur().integer);
          advance();
          e->args.push_back(std::move(node));
          e->args.push_back(std::move(index));
        } else {
          e->name = expect_name();
          e->args.push_back(std::move(node));
        }
        node = std::move(e);
      } else if (accept_op("[")) {
        node = parse_subscript(std::move(node), loc);
      } else if (is_op("(")) {
        auto call = make(Expr::Kind::kCall, loc);
        call->args.push_back(std::move(node));
        parse_call_args(*call);
        node = std::move(call);
      } else {
        return node;
      }
    }
  }

  ExprPtr parse_subscript(ExprPtr object, Location loc) {
    ExprPtr parts[3];
    int colons = 0;
    if (!is_op(":")) parts[0] = parse_expression(true);
    while (colons < 2 && accept_op(":")) {
      ++colons;
      if (!is_op(":") && !is_op("]")) parts[colons] = parse_expression(true);
    }
    expect_op("]");
    if (colons == 0) {
      auto e = make(Expr::Kind::kGetItem, loc);
      e->args.push_back(std::move(object));
      e->args.push_back(std::move(parts[0]));
      return e;
    }
    auto e = make(Expr::Kind::kSlice, loc);
    e->args.push_back(std::move(object));
    for (auto& p : parts) e->args.push_back(std::move(p));
    return e;
  }

  // After '|': name [(args)]. `subject` is null inside filter blocks and block sets.
  ExprPtr parse_filter(ExprPtr subject) {
    auto f = make(Expr::Kind::kFilter, cur().loc);
    f->name = expect_name();
    while (accept_op(".")) f->name += "." + expect_name();
    f->args.push_back(std::move(subject));
    if (is_op("(")) parse_call_args(*f);
    return f;
  }

  ExprPtr parse_filter_expr(ExprPtr node) {
    while (true) {
      if (accept_op("|")) {
        node = parse_filter(std::move(node));
      } else if (is_name("is")) {
        auto test = make(Expr::Kind::kTest, cur().loc);
        advance();
        test->negated = accept_name("not");
        test->name = expect_name();
        test->args.push_back(std::move(node));
        const Token& t = cur();
        if (is_op("(")) {
          parse_call_args(*test);
        } else if ((t.type == Tok::kName && t.text != "else" && t.text != "or" &&
                    t.text != "and") ||
                   t.type == Tok::kString || t.type == Tok::kInt || t.type == Tok::kFloat ||
                   is_op("[") || is_op("{")) {
          test->args.push_back(parse_postfix(parse_primary()));
        }
        node = std::move(test);
      } else if (is_op("(")) {
        auto call = make(Expr::Kind::kCall, cur().loc);
        call->args.push_back(std::move(node));
        parse_call_args(*call);
        node = std::move(call);
      } else {
        return node;
      }
    }
  }

  std::vector<Token> toks_;
  const std::string& origin_;
  size_t pos_ = 0;
  int depth_ = 0;
  int loop_depth_ = 0;
  std::vector<std::string> names_seen_;  // varargs / kwargs references, for macros
};

}  // namespace

std::shared_ptr<Program> parse_program(std::string source, std::string origin) {
  auto program = std::make_shared<Program>();
  program->source = std::move(source);
  program->origin = std::move(origin);
  const std::string normalized = normalize_newlines(program->source);
  Lexer lexer(normalized, program->origin);
  Parser parser(lexer.run(), program->origin);
  program->body = parser.parse_template();
  return program;
}

}  // namespace af::tok::jinja
