#pragma once
// Tree-walking renderer. Scopes follow Jinja: a for-loop iteration and a macro call open a
// scope, `if` does not; `set` writes to the innermost scope.
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "af/tokenizer/chat_template.hpp"
#include "tokenizer/chat_template/ast.hpp"
#include "tokenizer/chat_template/value.hpp"

namespace af::tok::jinja {

struct Scope {
  std::unordered_map<std::string, Value> vars;
  std::shared_ptr<Scope> parent;
};

using Limits = TemplateLimits;

// The interpreter is the rendering's Meter (cost.hpp): it owns the budgets of TemplateLimits.
class Interpreter : public Meter {
 public:
  Interpreter(const Program& program, Limits limits);
  ~Interpreter() override;
  Interpreter(const Interpreter&) = delete;
  Interpreter& operator=(const Interpreter&) = delete;

  std::string render(const Value& context);

  // For builtins: errors located at the node being evaluated.
  [[noreturn]] void fail(const std::string& message) const;
  // An exceeded TemplateLimits budget: kOutOfRange, so that callers can tell a template that
  // outgrew its budget (the operator's limits) from one that refused its input.
  [[noreturn]] void fail_limit(const std::string& message) const;
  void charge(uint64_t steps) override;
  void allocate(uint64_t bytes) override;
  void check_size(size_t bytes) const override;
  Value call(const Value& callee, CallArgs& args);
  Value make_namespace();
  const Limits& limits() const { return limits_; }

 private:
  enum class Flow { kNormal, kBreak, kContinue };
  struct DepthGuard;

  Flow exec_list(const StmtList& body, const std::shared_ptr<Scope>& scope);
  Flow exec(const Stmt& s, const std::shared_ptr<Scope>& scope);
  void exec_for(const Stmt& s, const std::shared_ptr<Scope>& scope);
  Value loop_info(const List& items, int64_t index);
  void exec_set(const Stmt& s, const std::shared_ptr<Scope>& scope);
  std::string render_body(const StmtList& body, const std::shared_ptr<Scope>& scope);
  Value define_macro(const Stmt& s, const std::shared_ptr<Scope>& scope);

 public:
  Value call_macro(const Stmt& macro, const std::shared_ptr<Scope>& defining,
                   const std::string& name, CallArgs& args);

 private:
  Value eval(const Expr& e, const std::shared_ptr<Scope>& scope);
  Value eval_call(const Expr& e, const std::shared_ptr<Scope>& scope);
  Value eval_binary(const Expr& e, const std::shared_ptr<Scope>& scope);
  Value eval_compare(const Expr& e, const std::shared_ptr<Scope>& scope);
  CallArgs eval_args(const Expr& e, size_t first, const std::shared_ptr<Scope>& scope);
  Value apply_filter(const Expr& filter, Value subject, const std::shared_ptr<Scope>& scope);
  Value lookup(const std::string& name, const std::shared_ptr<Scope>& scope) const;
  void emit(const std::string& text);
  void install_globals(Scope& globals);

  const Program& program_;
  Limits limits_;
  Location loc_;
  uint64_t steps_ = 0;
  uint64_t memory_ = 0;
  int depth_ = 0;
  std::string* out_ = nullptr;
  std::vector<std::shared_ptr<Dict>> namespaces_;
};

// Builtins (builtins.cpp). `args` excludes the subject.
Value run_filter(Interpreter& in, const std::string& name, Value subject, CallArgs& args);
bool run_test(Interpreter& in, const std::string& name, const Value& subject, CallArgs& args);
bool has_test(const std::string& name);
// obj.name(args): string, dict and list methods; nullopt-like Undefined when obj has no such
// method (the caller then tries an attribute holding a callable).
bool run_method(Interpreter& in, const Value& obj, const std::string& name, CallArgs& args,
                Value* result);

// Shared operators (builtins.cpp), Python semantics.
Value binary_op(Interpreter& in, const std::string& op, const Value& a, const Value& b);
bool compare_op(Interpreter& in, const std::string& op, const Value& a, const Value& b);
Value get_attr(Interpreter& in, const Value& obj, const std::string& name);
Value get_item(Interpreter& in, const Value& obj, const Value& key);
Value slice(Interpreter& in, const Value& obj, const Value& start, const Value& stop,
            const Value& step);
List iterate(Interpreter& in, const Value& v);
int64_t length_of(Interpreter& in, const Value& v);

}  // namespace af::tok::jinja
