// The chat-template cost model (docs/CHAT_TEMPLATES.md, "Errors and limits"): every operation is
// charged by the work it does, so hostile templates that stay under the step, size and depth
// limits in appearance (exponential sharing, big copies, quadratic searches, huge fills and
// widths) end in the named limit error within a bounded time and memory. Each attack below hung
// or exhausted memory before the cost model.
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <string>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "af/core/error.hpp"
#include "af/tokenizer/chat_template.hpp"
#include "test_util.hpp"

namespace af {
namespace {

using nlohmann::ordered_json;

#if defined(__SANITIZE_ADDRESS__)
#define AF_SANITIZED_BUILD 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(memory_sanitizer)
#define AF_SANITIZED_BUILD 1
#endif
#endif
#ifdef AF_SANITIZED_BUILD
constexpr double kSanitizerFactor = 5;  // instrumented code, shadow memory and quarantine
#else
constexpr double kSanitizerFactor = 1;
#endif

// CPU seconds of the rendering thread, so the bound holds on a loaded machine too. The attacks
// took minutes or gigabytes before; the worst now takes about half a second in a release build.
const double kSecondsBound = 2.0 * af::test::time_scale();
// Peak resident growth: 256 MiB of values plus transient buffers of a 32 MiB string.
constexpr long kPeakKibBound = static_cast<long>(1024 * 1024 * kSanitizerFactor);

double thread_seconds() {
  timespec t{};
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
  return static_cast<double>(t.tv_sec) + static_cast<double>(t.tv_nsec) * 1e-9;
}

struct Outcome {
  std::string output;  // the rendering, when it succeeded
  std::string error;   // the af::Error message, when it failed
  double seconds = 0;  // thread CPU time
};

Outcome run(const std::string& source, const tok::TemplateLimits& limits = {}) {
  Outcome r;
  const double start = thread_seconds();
  try {
    r.output =
        tok::ChatTemplate::parse(source, "attack.jinja").render(ordered_json::object(), limits);
  } catch (const Error& e) {
    EXPECT_EQ(e.component(), "template");
    r.error = e.what();
  }
  r.seconds = thread_seconds() - start;
  return r;
}

// The attack ends in the error naming `limit` (a TemplateLimits field), quickly.
void expect_limit(const std::string& source, const std::string& limit,
                  const tok::TemplateLimits& limits = {}) {
  const Outcome r = run(source, limits);
  EXPECT_NE(r.error.find("TemplateLimits::" + limit), std::string::npos)
      << "error: '" << r.error << "' output bytes: " << r.output.size() << "\n"
      << source;
  EXPECT_LT(r.seconds, kSecondsBound) << source;
}

// The template renders `expected` quickly: work that used to copy or rescan is now cheap.
void expect_fast(const std::string& source, const std::string& expected) {
  const Outcome r = run(source);
  EXPECT_EQ(r.error, "") << source;
  EXPECT_EQ(r.output, expected) << source;
  EXPECT_LT(r.seconds, kSecondsBound) << source;
}

const char kNestedPrint[] =
    "{% set ns = namespace(a=[1]) %}{% for i in range(40) %}{% set ns.a = [ns.a, ns.a] %}"
    "{% endfor %}{{ ns.a }}";
const char kNestedCompare[] =
    "{% set ns = namespace(a=[1], b=[1]) %}{% for i in range(60) %}{% set ns.a = [ns.a, ns.a] %}"
    "{% set ns.b = [ns.b, ns.b] %}{% endfor %}{{ ns.a == ns.b }}";
const char kListCount[] =
    "{% set s = 'x' * 1000000 %}{% set t = 'x' * 1000000 %}{% set l = [s] * 100000 %}"
    "{% for i in range(1000) %}{{ l.count(t) }}{% endfor %}";
const char kBatchFill[] = "{% for b in [1] | batch(2000000000, 'x') %}{{ b | length }}{% endfor %}";
const char kPrintfWidth[] = "{% for i in range(100000) %}{{ '%30000000d' % 1 }}{% endfor %}";
const char kStringIndex[] =
    "{% set s = 'x' * 30000000 %}{% for i in range(100000) %}{{ s[i] }}{% endfor %}";
const char kDictBuild[] =
    "{% set d = dict((range(100000) | list + range(100000) | list) | map('string') | batch(2)) %}"
    "{{ d | length }}";

TEST(ChatTemplateLimits, ExponentiallySharedListsArePrintedPerNode) {
  expect_limit(kNestedPrint, "max_steps");
  expect_limit(
      "{% set ns = namespace(a=[1]) %}{% for i in range(40) %}{% set ns.a = [ns.a, ns.a] %}"
      "{% endfor %}{{ ns.a | tojson }}",
      "max_steps");
  expect_limit(
      "{% set ns = namespace(a=['x']) %}{% for i in range(40) %}{% set ns.a = [ns.a, ns.a] %}"
      "{% endfor %}{{ ns.a | join(',') }}",
      "max_steps");
}

TEST(ChatTemplateLimits, ExponentiallySharedListsAreComparedPerNode) {
  expect_limit(kNestedCompare, "max_steps");
  expect_limit(
      "{% set ns = namespace(a=[1], b=[1]) %}{% for i in range(60) %}{% set ns.a = [ns.a, ns.a] %}"
      "{% set ns.b = [ns.b, ns.b] %}{% endfor %}{{ ns.a < ns.b }}",
      "max_steps");
  // Identical lists compare by identity, as Python's items do.
  expect_fast(
      "{% set ns = namespace(a=[1]) %}{% for i in range(60) %}{% set ns.a = [ns.a, ns.a] %}"
      "{% endfor %}{{ ns.a == ns.a }}",
      "True");
}

TEST(ChatTemplateLimits, ListRepetitionSharesTheStringAndIsChargedPerElement) {
  // One 30 MB string in a million slots: 30 TB of copies before, a shared pointer per slot now.
  expect_fast("{% set s = 'x' * 30000000 %}{% set l = [s] * 1000000 %}{{ l | length }}", "1000000");
  // The slots themselves are paid for: a few such lists exceed the budget.
  expect_limit(
      "{% set s = 'x' * 30000000 %}{% set ns = namespace(all=[]) %}{% for i in range(5) %}"
      "{% set ns.all = ns.all + [[s] * 1000000] %}{% endfor %}",
      "max_steps");
}

TEST(ChatTemplateLimits, VariableLookupsDoNotCopyStrings) {
  expect_fast(
      "{% set s = 'x' * 30000000 %}{% for i in range(100000) %}{% if s %}{% endif %}{% endfor %}"
      "done",
      "done");
  expect_fast(
      "{% set l = ['x' * 30000000] * 1000 %}{% for s in l %}{% set t = s %}{% endfor %}done",
      "done");
}

TEST(ChatTemplateLimits, ListCountAndMembershipAreCharged) {
  expect_limit(kListCount, "max_steps");
  expect_limit(
      "{% set s = 'x' * 1000000 %}{% set l = [s] * 100000 %}{% for i in range(1000) %}"
      "{{ ('x' * 1000000 + 'y') in l }}{% endfor %}",
      "max_steps");
}

TEST(ChatTemplateLimits, SubstringSearchesAreLinear) {
  // "aaa...ab" in "aaaa...": O(haystack * needle) = 2e10 byte comparisons with a naive search.
  const std::string setup = "{% set h = 'a' * 2000000 %}{% set n = 'a' * 10000 + 'b' %}";
  expect_fast(setup + "{{ n in h }}", "False");
  expect_fast(setup + "{{ h.find(n) }},{{ h.rfind(n) }},{{ h.count(n) }}", "-1,-1,0");
  expect_fast(setup + "{{ h.split(n) | length }},{{ h.rsplit(n) | length }}", "1,1");
  expect_fast(setup + "{{ h.replace(n, 'x') | length }},{{ h | replace(n, 'x') | length }}",
              "2000000,2000000");
  // Long strip sets: membership is a binary search, not a scan per character.
  expect_fast("{{ ('a' * 2000000 + 'b').lstrip('c' * 1000000 + 'a') }}", "b");
}

TEST(ChatTemplateLimits, BatchFillIsChargedBeforeItIsMade) {
  expect_limit(kBatchFill, "max_memory_bytes");
  EXPECT_EQ(run("{{ [1, 2, 3] | batch(2, 0) | list }}").output, "[[1, 2], [3, 0]]");
}

TEST(ChatTemplateLimits, PrintfWidthAndPrecisionAreBounded) {
  expect_limit("{{ '%999999999d' % 1 }}", "max_string_bytes");
  expect_limit("{{ '%.999999999f' % 1.0 }}", "max_string_bytes");
  expect_limit("{{ '%9999999999s' % 'x' }}", "max_string_bytes");
  expect_limit(kPrintfWidth, "max_string_bytes");  // the output grows by 30 MB per item
  // Widths beyond the old 512-byte buffer are formatted in full rather than truncated.
  EXPECT_EQ(run("{{ '%600d' % 7 }}").output, std::string(599, ' ') + "7");
  EXPECT_EQ(run("{{ '%-4s|%05.1f|%x' % ('ab', 2.25, 255) }}").output, "ab  |002.2|ff");
}

TEST(ChatTemplateLimits, StringDecodingAndDictScansAreCharged) {
  expect_limit(kStringIndex, "max_steps");
  expect_limit(
      "{% set s = 'x' * 30000000 %}{% for i in range(100000) %}{{ s | length }}{% endfor %}",
      "max_steps");
  expect_limit(kDictBuild, "max_steps");
}

TEST(ChatTemplateLimits, StringIndexesAndSlicesWalkToTheirCharacters) {
  // s[i], s[a:b] and |length count code points without decoding the whole string.
  EXPECT_EQ(run("{% set s = 'a\u00e9\u2603\U0001F600' %}{{ s[0] }}{{ s[1] }}{{ s[3] }}{{ s[-1] }}"
                "{{ s[-4] }}|{{ s[4] is defined }}{{ s[-5] is defined }}|{{ s[1:3] }}|{{ s[-2:] }}|"
                "{{ s[:-3] }}|{{ s[2:1] }}|{{ s[::2] }}|{{ s[::-1] }}|{{ s | length }}")
                .output,
            "a\u00e9\U0001F600\U0001F600a|FalseFalse|\u00e9\u2603|\u2603\U0001F600|a||a\u2603|"
            "\U0001F600\u2603\u00e9a|4");
  expect_fast("{% set s = 'x' * 10000000 + 'y' %}{{ s[10000000] }}{{ s[-1] }}{{ s[9999999:] }}",
              "yyxy");
}

TEST(ChatTemplateLimits, LimitsAreConfigurable) {
  tok::TemplateLimits tight;
  tight.max_memory_bytes = 1 << 20;
  expect_limit("{{ ('x' * 2000000) | length }}", "max_memory_bytes", tight);
  tight = {};
  tight.max_steps = 1000;
  expect_limit("{{ 'a' * 100000 + 'b' in 'a' * 1000000 }}", "max_steps", tight);
  tight = {};
  tight.max_string_bytes = 1000;
  expect_limit("{{ '%2000d' % 1 }}", "max_string_bytes", tight);
}

// ---- the default budgets are real bounds
// ---------------------------------------------------------

struct Cost {
  double seconds = 0;
  long peak_kib = -1;  // growth of the resident high-water mark during the rendering
  bool limit_error = false;
  bool other_error = false;
};

long vm_hwm_kib() {
  std::ifstream status("/proc/self/status");
  std::string line;
  while (std::getline(status, line))
    if (line.rfind("VmHWM:", 0) == 0) return std::stol(line.substr(6));
  return -1;
}

// Renders in a child process (so a runaway cannot take the test binary with it) with the
// resident high-water mark reset first; reports time and peak resident growth.
Cost measure(const std::string& source) {
  int fds[2];
  if (pipe(fds) != 0) return {};
  const pid_t pid = fork();
  if (pid == 0) {
    close(fds[0]);
    Cost c;
    { std::ofstream("/proc/self/clear_refs") << "5"; }  // resets VmHWM to the current RSS
    const long before = vm_hwm_kib();
    const Outcome r = run(source);
    c.seconds = r.seconds;
    c.peak_kib = before < 0 ? -1 : vm_hwm_kib() - before;
    c.limit_error = r.error.find("TemplateLimits::") != std::string::npos;
    c.other_error = !r.error.empty() && !c.limit_error;
    if (write(fds[1], &c, sizeof c) != static_cast<ssize_t>(sizeof c)) _exit(2);
    _exit(0);
  }
  close(fds[1]);
  Cost c;
  const ssize_t got = read(fds[0], &c, sizeof c);
  close(fds[0]);
  int status = 0;
  waitpid(pid, &status, 0);
  EXPECT_EQ(got, static_cast<ssize_t>(sizeof c)) << "the child died: " << source;
  return c;
}

TEST(ChatTemplateLimits, DefaultBudgetsBoundTimeAndMemoryOfTheWorstTemplates) {
  const std::string worst[] = {
      kNestedPrint,
      kNestedCompare,
      kListCount,
      kBatchFill,
      kPrintfWidth,
      kStringIndex,
      kDictBuild,
      // Spend the step budget on plain evaluation, and on the biggest strings allowed.
      "{% for i in range(100000) %}{% for j in range(100000) %}{{ j }}{% endfor %}{% endfor %}",
      "{% set ns = namespace(s='x' * 30000000) %}{% for i in range(1000) %}"
      "{% set ns.s = (ns.s ~ 'y')[1:] %}{% endfor %}",
      "{% set s = 'x' * 30000000 %}{% set ns = namespace(l=[]) %}{% for i in range(100) %}"
      "{% set ns.l = ns.l + [s ~ i] %}{% endfor %}",
      "{% for i in range(100000) %}{{ ('%01000000d' % i)[:1] }}{% endfor %}",
      "{% set ns = namespace(l=['x' * 1000]) %}{% for i in range(30) %}"
      "{% set ns.l = ns.l + ns.l %}{% endfor %}{{ ns.l | join }}",
  };
  for (const std::string& source : worst) {
    const Cost c = measure(source);
    EXPECT_FALSE(c.other_error) << source;
    EXPECT_LT(c.seconds, kSecondsBound) << source;
    EXPECT_LT(c.peak_kib, kPeakKibBound) << source;
    std::printf("[ cost     ] %.3f s, +%ld MiB peak: %.60s\n", c.seconds, c.peak_kib / 1024,
                source.c_str());
  }
}

}  // namespace
}  // namespace af
