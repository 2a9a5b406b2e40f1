#include "tokenizer/chat_template/interpreter.hpp"

#include <ctime>
#include <stdexcept>

#include "af/core/error.hpp"

namespace af::tok::jinja {

struct Interpreter::DepthGuard {
  explicit DepthGuard(Interpreter& in) : interp(in) {
    if (++interp.depth_ > interp.limits_.max_depth)
      interp.fail_limit("recursion deeper than " + std::to_string(interp.limits_.max_depth) +
                        " levels (TemplateLimits::max_depth)");
  }
  ~DepthGuard() { --interp.depth_; }
  Interpreter& interp;
};

Interpreter::Interpreter(const Program& program, Limits limits)
    : program_(program), limits_(limits) {}

Interpreter::~Interpreter() {
  // Namespaces are the only containers a template can mutate, hence the only way to build
  // reference cycles; emptying them frees everything the rendering allocated.
  for (auto& ns : namespaces_) {
    std::vector<std::pair<std::string, Value>> entries;
    entries.swap(ns->entries);
  }
}

void Interpreter::fail(const std::string& message) const {
  af::fail(ErrorCode::kInvalidArgument, "template", program_.origin, ":", loc_.line, ":",
           loc_.column, ": ", message);
}

void Interpreter::fail_limit(const std::string& message) const {
  af::fail(ErrorCode::kOutOfRange, "template", program_.origin, ":", loc_.line, ":", loc_.column,
           ": ", message);
}

void Interpreter::charge(uint64_t steps) {
  steps_ += steps;
  if (steps_ > limits_.max_steps)
    fail_limit("rendering exceeded " + std::to_string(limits_.max_steps) +
               " evaluation steps (TemplateLimits::max_steps)");
}

void Interpreter::allocate(uint64_t bytes) {
  memory_ += bytes;
  if (memory_ > limits_.max_memory_bytes)
    fail_limit("rendering exceeded " + std::to_string(limits_.max_memory_bytes) +
               " bytes of values created (TemplateLimits::max_memory_bytes)");
  charge((bytes + kBytesPerStep - 1) / kBytesPerStep);
}

void Interpreter::check_size(size_t bytes) const {
  if (bytes > limits_.max_string_bytes)
    fail_limit("a string or the output would exceed " + std::to_string(limits_.max_string_bytes) +
               " bytes (TemplateLimits::max_string_bytes)");
}

Value Interpreter::make_namespace() {
  Value ns = Value::new_namespace();
  namespaces_.push_back(ns.dict);
  return ns;
}

void Interpreter::emit(const std::string& text) {
  check_size(out_->size() + text.size());
  charge(1);
  allocate(text.size());  // the output (or a macro's buffer) holds it
  *out_ += text;
}

std::string Interpreter::render(const Value& context) {
  auto globals = std::make_shared<Scope>();
  install_globals(*globals);
  auto top = std::make_shared<Scope>();
  top->parent = globals;
  if (context.kind == Kind::kDict)
    for (const auto& [k, v] : context.dict->entries) top->vars[k] = v;
  std::string out;
  out_ = &out;
  const MeterScope metered(this);
  try {
    exec_list(program_.body, top);
  } catch (const af::Error&) {
    throw;
  } catch (const std::exception& e) {
    fail(e.what());
  }
  return out;
}

// ---- statements -------------------------------------------------------------------------------

Interpreter::Flow Interpreter::exec_list(const StmtList& body,
                                         const std::shared_ptr<Scope>& scope) {
  for (const auto& s : body) {
    const Flow f = exec(*s, scope);
    if (f != Flow::kNormal) return f;
  }
  return Flow::kNormal;
}

std::string Interpreter::render_body(const StmtList& body, const std::shared_ptr<Scope>& scope) {
  std::string buffer;
  std::string* saved = out_;
  out_ = &buffer;
  try {
    exec_list(body, scope);
  } catch (...) {
    out_ = saved;
    throw;
  }
  out_ = saved;
  return buffer;
}

Interpreter::Flow Interpreter::exec(const Stmt& s, const std::shared_ptr<Scope>& scope) {
  DepthGuard guard(*this);
  loc_ = s.loc;
  charge(1);
  switch (s.kind) {
    case Stmt::Kind::kText:
      emit(s.text);
      return Flow::kNormal;
    case Stmt::Kind::kOutput: {
      const Value v = eval(*s.expr, scope);
      loc_ = s.loc;
      emit(to_str(v));
      return Flow::kNormal;
    }
    case Stmt::Kind::kIf:
      for (const auto& [cond, body] : s.branches) {
        if (!cond || eval(*cond, scope).truthy()) return exec_list(body, scope);
      }
      return Flow::kNormal;
    case Stmt::Kind::kFor:
      exec_for(s, scope);
      return Flow::kNormal;
    case Stmt::Kind::kSet:
      exec_set(s, scope);
      return Flow::kNormal;
    case Stmt::Kind::kSetBlock: {
      Value v = Value::from_string(render_body(s.body, scope));
      for (const auto& f : s.filters) v = apply_filter(*f, std::move(v), scope);
      scope->vars[s.targets[0]] = std::move(v);
      return Flow::kNormal;
    }
    case Stmt::Kind::kMacro:
      scope->vars[s.text] = define_macro(s, scope);
      return Flow::kNormal;
    case Stmt::Kind::kCallBlock: {
      Value caller = define_macro(s, scope);
      const Expr& call = *s.expr;
      Value callee = eval(*call.args[0], scope);
      CallArgs args = eval_args(call, 1, scope);
      args.keyword.emplace_back("caller", std::move(caller));
      loc_ = s.loc;
      emit(to_str(this->call(callee, args)));
      return Flow::kNormal;
    }
    case Stmt::Kind::kFilterBlock: {
      Value v = Value::from_string(render_body(s.body, scope));
      for (const auto& f : s.filters) v = apply_filter(*f, std::move(v), scope);
      emit(to_str(v));
      return Flow::kNormal;
    }
    case Stmt::Kind::kScope:
      return exec_list(s.body, scope);
    case Stmt::Kind::kBreak:
      return Flow::kBreak;
    case Stmt::Kind::kContinue:
      return Flow::kContinue;
  }
  return Flow::kNormal;
}

namespace {

void bind_targets(Interpreter& in, Scope& scope, const std::vector<std::string>& targets,
                  const Value& v) {
  if (targets.size() == 1) {
    scope.vars[targets[0]] = v;
    return;
  }
  const List items = iterate(in, v);
  if (items.size() != targets.size()) {
    in.fail("cannot unpack " + std::to_string(items.size()) + " values into " +
            std::to_string(targets.size()) + " names");
  }
  for (size_t i = 0; i < targets.size(); ++i) scope.vars[targets[i]] = items[i];
}

}  // namespace

void Interpreter::exec_for(const Stmt& s, const std::shared_ptr<Scope>& scope) {
  const Value iterable = eval(*s.expr, scope);
  loc_ = s.loc;
  if (iterable.is_none()) fail("'NoneType' object is not iterable");
  List items = iterate(*this, iterable);
  charge(items.size());
  if (s.cond) {
    List kept;
    for (const Value& item : items) {
      auto probe = std::make_shared<Scope>();
      probe->parent = scope;
      bind_targets(*this, *probe, s.targets, item);
      if (eval(*s.cond, probe).truthy()) kept.push_back(item);
    }
    items = std::move(kept);
  }
  if (items.empty()) {
    exec_list(s.else_body, scope);
    return;
  }
  const auto n = static_cast<int64_t>(items.size());
  for (int64_t i = 0; i < n; ++i) {
    auto iteration = std::make_shared<Scope>();
    iteration->parent = scope;
    charge(4);
    if (s.uses_loop) iteration->vars["loop"] = loop_info(items, i);
    bind_targets(*this, *iteration, s.targets, items[static_cast<size_t>(i)]);
    if (exec_list(s.body, iteration) == Flow::kBreak) break;
  }
}

Value Interpreter::loop_info(const List& items, int64_t i) {
  const auto n = static_cast<int64_t>(items.size());
  {
    Value loop = Value::new_dict();
    Dict& d = *loop.dict;
    d.set("index", Value::from_int(i + 1));
    d.set("index0", Value::from_int(i));
    d.set("revindex", Value::from_int(n - i));
    d.set("revindex0", Value::from_int(n - i - 1));
    d.set("first", Value::from_bool(i == 0));
    d.set("last", Value::from_bool(i == n - 1));
    d.set("length", Value::from_int(n));
    d.set("depth", Value::from_int(1));
    d.set("depth0", Value::from_int(0));
    if (i > 0) d.set("previtem", items[static_cast<size_t>(i - 1)]);
    if (i + 1 < n) d.set("nextitem", items[static_cast<size_t>(i + 1)]);
    d.set("cycle", Value::function("loop.cycle", [i](CallArgs& args, Interpreter& in) {
            if (args.positional.empty()) in.fail("no items for cycling given");
            return args.positional[static_cast<size_t>(i) % args.positional.size()];
          }));
    update_depth(loop);
    return loop;
  }
}

void Interpreter::exec_set(const Stmt& s, const std::shared_ptr<Scope>& scope) {
  Value v = eval(*s.expr, scope);
  loc_ = s.loc;
  if (!s.attr.empty()) {
    const Value target = lookup(s.targets[0], scope);
    if (target.kind != Kind::kNamespace) fail("cannot assign attribute on non-namespace object");
    if (!s.attr.empty() && s.attr[0] == '_')
      fail("cannot store underscore-prefixed attributes on a namespace");
    target.dict->set(s.attr, std::move(v));
    return;
  }
  bind_targets(*this, *scope, s.targets, v);
}

Value Interpreter::define_macro(const Stmt& s, const std::shared_ptr<Scope>& scope) {
  // The macro refers to its defining scope weakly: the scope holds the macro, and a strong
  // reference back would be a cycle. Scopes outlive the macros' use within one rendering.
  std::weak_ptr<Scope> defining = scope;
  const Stmt* macro = &s;
  const std::string name = s.kind == Stmt::Kind::kMacro ? s.text : "caller";
  return Value::function(name, [macro, defining, name](CallArgs& args, Interpreter& in) -> Value {
    return in.call_macro(*macro, defining.lock(), name, args);
  });
}

Value Interpreter::call_macro(const Stmt& macro, const std::shared_ptr<Scope>& defining,
                              const std::string& name, CallArgs& args) {
  if (!defining) fail("macro '" + name + "' called after its scope ended");
  DepthGuard guard(*this);
  auto local = std::make_shared<Scope>();
  local->parent = defining;
  const size_t n = macro.params.size();
  std::vector<bool> bound(n, false);
  List varargs;
  for (size_t i = 0; i < args.positional.size(); ++i) {
    if (i < n) {
      local->vars[macro.params[i]] = args.positional[i];
      bound[i] = true;
    } else {
      if (!macro.uses_varargs)
        fail("macro '" + name + "' takes not more than " + std::to_string(n) + " argument(s)");
      varargs.push_back(args.positional[i]);
    }
  }
  Value kwargs = Value::new_dict();
  for (auto& [key, value] : args.keyword) {
    bool matched = false;
    for (size_t i = 0; i < n; ++i) {
      if (macro.params[i] == key) {
        if (bound[i]) fail("macro '" + name + "' got multiple values for argument '" + key + "'");
        local->vars[key] = value;
        bound[i] = true;
        matched = true;
      }
    }
    if (!matched) {
      if (key == "caller") {
        local->vars["caller"] = value;
      } else {
        if (!macro.uses_kwargs)
          fail("macro '" + name + "' takes no keyword argument '" + key + "'");
        kwargs.dict->set(key, value);
      }
    }
  }
  for (size_t i = 0; i < n; ++i) {
    if (bound[i]) continue;
    local->vars[macro.params[i]] = macro.defaults[i]
                                       ? eval(*macro.defaults[i], local)
                                       : Value::undefined("'" + macro.params[i] + "' is undefined");
  }
  update_depth(kwargs);
  local->vars["varargs"] = Value::new_tuple(std::move(varargs));
  local->vars["kwargs"] = std::move(kwargs);
  std::string text = render_body(macro.body, local);
  local->vars.clear();
  return Value::from_string(std::move(text));
}

// ---- expressions ------------------------------------------------------------------------------

Value Interpreter::lookup(const std::string& name, const std::shared_ptr<Scope>& scope) const {
  for (const Scope* s = scope.get(); s; s = s->parent.get()) {
    auto it = s->vars.find(name);
    if (it != s->vars.end()) return it->second;
  }
  return Value::undefined("'" + name + "' is undefined");
}

CallArgs Interpreter::eval_args(const Expr& e, size_t first, const std::shared_ptr<Scope>& scope) {
  CallArgs args;
  for (size_t i = first; i < e.args.size(); ++i) args.positional.push_back(eval(*e.args[i], scope));
  for (const auto& [k, v] : e.keyword) args.keyword.emplace_back(k, eval(*v, scope));
  return args;
}

Value Interpreter::call(const Value& callee, CallArgs& args) {
  if (callee.kind == Kind::kCallable) return callee.callable->fn(args, *this);
  if (callee.is_undefined())
    fail(callee.text.empty() ? "undefined value is not callable" : callee.text.str());
  fail(std::string("'") + callee.type_name() + "' object is not callable");
}

Value Interpreter::apply_filter(const Expr& filter, Value subject,
                                const std::shared_ptr<Scope>& scope) {
  CallArgs args = eval_args(filter, 1, scope);
  loc_ = filter.loc;
  return run_filter(*this, filter.name, std::move(subject), args);
}

Value Interpreter::eval_call(const Expr& e, const std::shared_ptr<Scope>& scope) {
  const Expr& callee = *e.args[0];
  if (callee.kind == Expr::Kind::kGetAttr) {
    const Value obj = eval(*callee.args[0], scope);
    CallArgs args = eval_args(e, 1, scope);
    loc_ = e.loc;
    if (obj.is_undefined())
      fail(obj.text.empty() ? "undefined value has no attributes" : obj.text.str());
    Value result;
    if (run_method(*this, obj, callee.name, args, &result)) return result;
    const Value attr = get_attr(*this, obj, callee.name);
    if (attr.is_undefined())
      fail(std::string("'") + obj.type_name() + " object' has no attribute '" + callee.name + "'");
    return call(attr, args);
  }
  const Value fn = eval(callee, scope);
  CallArgs args = eval_args(e, 1, scope);
  loc_ = e.loc;
  return call(fn, args);
}

Value Interpreter::eval_binary(const Expr& e, const std::shared_ptr<Scope>& scope) {
  if (e.name == "and") {
    Value a = eval(*e.args[0], scope);
    return a.truthy() ? eval(*e.args[1], scope) : a;
  }
  if (e.name == "or") {
    Value a = eval(*e.args[0], scope);
    return a.truthy() ? a : eval(*e.args[1], scope);
  }
  const Value a = eval(*e.args[0], scope);
  const Value b = eval(*e.args[1], scope);
  loc_ = e.loc;
  return binary_op(*this, e.name, a, b);
}

Value Interpreter::eval_compare(const Expr& e, const std::shared_ptr<Scope>& scope) {
  Value left = eval(*e.args[0], scope);
  for (size_t i = 0; i < e.ops.size(); ++i) {
    Value right = eval(*e.args[i + 1], scope);
    loc_ = e.loc;
    if (!compare_op(*this, e.ops[i], left, right)) return Value::from_bool(false);
    left = std::move(right);
  }
  return Value::from_bool(true);
}

Value Interpreter::eval(const Expr& e, const std::shared_ptr<Scope>& scope) {
  DepthGuard guard(*this);
  loc_ = e.loc;
  charge(1);
  switch (e.kind) {
    case Expr::Kind::kLiteral:
      return e.value;
    case Expr::Kind::kName:
      return lookup(e.name, scope);
    case Expr::Kind::kList:
    case Expr::Kind::kTuple: {
      List items;
      items.reserve(e.args.size());
      for (const auto& a : e.args) items.push_back(eval(*a, scope));
      loc_ = e.loc;
      return e.kind == Expr::Kind::kList ? Value::new_list(std::move(items))
                                         : Value::new_tuple(std::move(items));
    }
    case Expr::Kind::kDict: {
      Value d = Value::new_dict();
      for (size_t i = 0; i + 1 < e.args.size(); i += 2) {
        const Value key = eval(*e.args[i], scope);
        Value value = eval(*e.args[i + 1], scope);
        loc_ = e.loc;
        if (!key.is_string()) fail("dict keys must be strings in chat templates");
        d.dict->set(key.text, std::move(value));
      }
      update_depth(d);
      return d;
    }
    case Expr::Kind::kGetAttr: {
      const Value obj = eval(*e.args[0], scope);
      loc_ = e.loc;
      return get_attr(*this, obj, e.name);
    }
    case Expr::Kind::kGetItem: {
      const Value obj = eval(*e.args[0], scope);
      const Value key = eval(*e.args[1], scope);
      loc_ = e.loc;
      return get_item(*this, obj, key);
    }
    case Expr::Kind::kSlice: {
      const Value obj = eval(*e.args[0], scope);
      Value parts[3];
      for (int i = 0; i < 3; ++i)
        parts[i] = e.args[static_cast<size_t>(i) + 1]
                       ? eval(*e.args[static_cast<size_t>(i) + 1], scope)
                       : Value::none();
      loc_ = e.loc;
      return slice(*this, obj, parts[0], parts[1], parts[2]);
    }
    case Expr::Kind::kCall:
      return eval_call(e, scope);
    case Expr::Kind::kFilter:
      return apply_filter(e, eval(*e.args[0], scope), scope);
    case Expr::Kind::kTest: {
      const Value subject = eval(*e.args[0], scope);
      CallArgs args = eval_args(e, 1, scope);
      loc_ = e.loc;
      const bool r = run_test(*this, e.name, subject, args);
      return Value::from_bool(e.negated ? !r : r);
    }
    case Expr::Kind::kUnary: {
      const Value v = eval(*e.args[0], scope);
      loc_ = e.loc;
      if (e.name == "not") return Value::from_bool(!v.truthy());
      if (e.name == "-" && v.kind == Kind::kFloat) return Value::from_float(-v.number);
      if (e.name == "-") return binary_op(*this, "-", Value::from_int(0), v);
      if (!v.is_number()) {
        if (v.is_undefined()) fail(v.text.empty() ? "undefined value in arithmetic" : v.text.str());
        fail(std::string("bad operand type for unary +: '") + v.type_name() + "'");
      }
      return v.kind == Kind::kBool ? Value::from_int(v.boolean) : v;
    }
    case Expr::Kind::kBinary:
      return eval_binary(e, scope);
    case Expr::Kind::kCompare:
      return eval_compare(e, scope);
    case Expr::Kind::kConditional:
      if (eval(*e.args[0], scope).truthy()) return eval(*e.args[1], scope);
      return e.args[2] ? eval(*e.args[2], scope)
                       : Value::undefined("conditional expression had no else branch");
  }
  return Value::undefined();
}

// ---- globals ------------------------------------------------------------------------------

void Interpreter::install_globals(Scope& globals) {
  globals.vars["raise_exception"] =
      Value::function("raise_exception", [](CallArgs& args, Interpreter& in) -> Value {
        in.fail(args.positional.empty() ? std::string("raise_exception called")
                                        : to_str(args.positional[0]));
      });
  globals.vars["range"] = Value::function("range", [](CallArgs& args, Interpreter& in) -> Value {
    int64_t v[3] = {0, 0, 1};
    const size_t n = args.positional.size();
    if (n < 1 || n > 3 || !args.keyword.empty()) in.fail("range expects 1 to 3 integer arguments");
    for (size_t i = 0; i < n; ++i) {
      const Value& a = args.positional[i];
      if (a.kind != Kind::kInt && a.kind != Kind::kBool)
        in.fail(std::string("'") + a.type_name() + "' object cannot be interpreted as an integer");
      const int64_t x = a.kind == Kind::kBool ? a.boolean : a.integer;
      if (n == 1) {
        v[1] = x;
      } else {
        v[i] = x;
      }
    }
    if (v[2] == 0) in.fail("range() arg 3 must not be zero");
    // Jinja's sandbox refuses ranges longer than 100000 items.
    constexpr int64_t kMaxRange = 100000;
    const long double count =
        v[2] > 0 ? (static_cast<long double>(v[1]) - v[0]) / v[2]
                 : (static_cast<long double>(v[0]) - v[1]) / -static_cast<long double>(v[2]);
    if (count > kMaxRange)
      in.fail("Range too big. The sandbox blocks ranges larger than MAX_RANGE (100000).");
    List items;
    for (int64_t x = v[0]; v[2] > 0 ? x < v[1] : x > v[1]; x += v[2]) {
      items.push_back(Value::from_int(x));
      if (v[2] > 0 ? x > INT64_MAX - v[2] : x < INT64_MIN - v[2]) break;
    }
    in.charge(items.size());
    return Value::new_list(std::move(items));
  });
  globals.vars["namespace"] =
      Value::function("namespace", [](CallArgs& args, Interpreter& in) -> Value {
        Value ns = in.make_namespace();
        auto put = [&](const std::string& key, const Value& value) {
          if (!key.empty() && key[0] == '_')
            in.fail("cannot store underscore-prefixed attributes on a namespace");
          ns.dict->set(key, value);
        };
        for (const Value& p : args.positional) {
          if (p.kind != Kind::kDict) in.fail("namespace() takes mappings as positional arguments");
          for (const auto& [k, v] : p.dict->entries) put(k, v);
        }
        for (const auto& [k, v] : args.keyword) put(k, v);
        return ns;
      });
  globals.vars["dict"] = Value::function("dict", [](CallArgs& args, Interpreter& in) -> Value {
    Value d = Value::new_dict();
    for (const Value& p : args.positional) {
      if (p.kind == Kind::kDict) {
        for (const auto& [k, v] : p.dict->entries) d.dict->set(k, v);
      } else {
        for (const Value& pair : iterate(in, p)) {
          const List kv = iterate(in, pair);
          if (kv.size() != 2 || !kv[0].is_string())
            in.fail("dict() expects (string key, value) pairs");
          d.dict->set(kv[0].text, kv[1]);
        }
      }
    }
    for (const auto& [k, v] : args.keyword) d.dict->set(k, v);
    update_depth(d);
    return d;
  });
  globals.vars["strftime_now"] =
      Value::function("strftime_now", [](CallArgs& args, Interpreter& in) -> Value {
        if (args.positional.size() != 1 || !args.positional[0].is_string())
          in.fail("strftime_now expects a format string");
        const std::string& format = args.positional[0].text;
        if (format.size() > 256) in.fail("strftime_now format longer than 256 bytes");
        const std::time_t now = std::time(nullptr);
        std::tm local{};
        localtime_r(&now, &local);
        std::string buffer(4096, '\0');
        const size_t n = format.empty()
                             ? 0
                             : std::strftime(buffer.data(), buffer.size(), format.c_str(), &local);
        buffer.resize(n);
        return Value::from_string(std::move(buffer));
      });
}

}  // namespace af::tok::jinja
