#pragma once
// Syntax tree of a parsed template. Every node keeps its 1-based line and column for errors.
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "tokenizer/chat_template/value.hpp"

namespace af::tok::jinja {

struct Expr;
struct Stmt;
using ExprPtr = std::unique_ptr<Expr>;
using StmtList = std::vector<std::unique_ptr<Stmt>>;

struct Location {
  int line = 1;
  int column = 1;
};

struct Expr {
  enum class Kind {
    kLiteral,     // value
    kName,        // name
    kList,        // args
    kTuple,       // args
    kDict,        // args: key, value, key, value...
    kGetAttr,     // args[0].name
    kGetItem,     // args[0][args[1]]
    kSlice,       // args[0][args[1]:args[2]:args[3]]; absent parts are null
    kCall,        // args[0](args[1..], keyword)
    kFilter,      // name(args[0], args[1..], keyword); args[0] null inside filter blocks
    kTest,        // args[0] is [not] name(args[1..], keyword)
    kUnary,       // name in {"-", "+", "not"}
    kBinary,      // name: + - * / // % ** ~ and or
    kCompare,     // args[0] ops[0] args[1] ops[1] args[2]...: == != < > <= >= in notin
    kConditional  // args[1] if args[0] else args[2] (args[2] may be null)
  };
  Kind kind;
  Location loc;
  Value value;
  std::string name;
  bool negated = false;
  std::vector<ExprPtr> args;
  std::vector<std::pair<std::string, ExprPtr>> keyword;
  std::vector<std::string> ops;

  Expr() = default;
  Expr(const Expr&) = delete;
  Expr& operator=(const Expr&) = delete;
  // Long operator chains ("1+1+...") nest deeply; tear them down without recursion.
  ~Expr() {
    std::vector<ExprPtr> pending;
    auto detach = [&pending](Expr& e) {
      for (auto& a : e.args)
        if (a) pending.push_back(std::move(a));
      for (auto& kv : e.keyword)
        if (kv.second) pending.push_back(std::move(kv.second));
    };
    detach(*this);
    while (!pending.empty()) {
      ExprPtr e = std::move(pending.back());
      pending.pop_back();
      detach(*e);
    }
  }
};

struct Stmt {
  enum class Kind {
    kText,       // text
    kOutput,     // {{ expr }}
    kIf,         // branches (condition, body); a null condition is else
    kFor,        // targets in expr [if cond] body else_body
    kSet,        // targets (or target.attr) = expr
    kSetBlock,   // target = rendered body, through filters
    kMacro,      // name(params = defaults) body
    kCallBlock,  // {% call macro(args) %}body{% endcall %}: expr is the call, params caller's
    kFilterBlock,
    kBreak,
    kContinue,
    kScope  // body rendered in place ({% generation %})
  };
  Kind kind;
  Location loc;
  std::string text;
  ExprPtr expr;
  ExprPtr cond;
  std::vector<std::string> targets;
  std::string attr;  // kSet on a namespace attribute: targets[0].attr
  std::vector<ExprPtr> filters;
  std::vector<std::pair<ExprPtr, StmtList>> branches;
  StmtList body;
  StmtList else_body;
  std::vector<std::string> params;
  std::vector<ExprPtr> defaults;  // per param, null when none
  bool uses_varargs = false;      // a macro body naming `varargs` accepts extra positionals
  bool uses_kwargs = false;       // ... and `kwargs` extra keywords
  bool uses_loop = true;          // a for body (or its filter) naming `loop`
};

struct Program {
  std::string source;
  std::string origin;
  StmtList body;
};

// Throws af::Error (kFormat, "template") naming origin:line:column.
std::shared_ptr<Program> parse_program(std::string source, std::string origin);

}  // namespace af::tok::jinja
