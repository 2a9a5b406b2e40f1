// Continuous batching: requests run together through one model give exactly what each gets
// alone (greedy), reuse cached prefixes, honour stop strings, cancel at once, refuse overload.
#include <chrono>
#include <future>
#include <thread>

#include "af/core/error.hpp"
#include "af/models/causal_lm.hpp"
#include "af/runtime/scheduler.hpp"
#include "af/runtime/session.hpp"
#include "af/tokenizer/tokenizer.hpp"
#include "runtime/json_matcher.hpp"
#include "test_util.hpp"

namespace af {
namespace {

using runtime::GenerationRequest;
using runtime::RequestResult;
using runtime::Scheduler;
using runtime::SchedulerOptions;
using runtime::StopCause;

std::string stories_path() { return test::testdata_dir() + "/models/stories260K-hf"; }

struct Fixture {
  Fixture() {
    models::LoadOptions options;
    options.num_threads = 1;
    model = models::load(stories_path(), options);
    tokenizer = tok::Tokenizer::load(stories_path());
  }
  std::unique_ptr<models::CausalLM> model;
  std::unique_ptr<tok::Tokenizer> tokenizer;
};

// Greedy generation through the model's own sequence, one token at a time.
std::vector<int32_t> greedy_alone(models::CausalLM& model, const std::vector<int32_t>& prompt,
                                  int max_tokens, const std::vector<int32_t>& eos) {
  model.reset_state();
  std::vector<float> logits = model.forward(prompt, false);
  std::vector<int32_t> out;
  for (int i = 0; i < max_tokens; ++i) {
    const int32_t id = ops::argmax(logits);
    if (std::find(eos.begin(), eos.end(), id) != eos.end()) break;
    out.push_back(id);
    logits = model.forward({&id, 1}, false);
  }
  return out;
}

// The text of `ids` as a continuation of `prompt` (a leading space stays).
std::string continuation(const tok::Tokenizer& tokenizer, const std::vector<int32_t>& prompt,
                         const std::vector<int32_t>& ids) {
  std::vector<int32_t> all = prompt;
  all.insert(all.end(), ids.begin(), ids.end());
  return tokenizer.decode(all, true).substr(tokenizer.decode(prompt, true).size());
}

struct Outcome {
  std::promise<RequestResult> promise;
  std::string streamed;
};

GenerationRequest make_request(std::vector<int32_t> prompt, int64_t max_tokens,
                               std::shared_ptr<Outcome> outcome) {
  GenerationRequest r;
  r.prompt = std::move(prompt);
  r.max_tokens = max_tokens;
  r.on_chunk = [outcome](const runtime::StreamChunk& c) { outcome->streamed += c.text; };
  r.on_done = [outcome](const RequestResult& res) { outcome->promise.set_value(res); };
  return r;
}

std::vector<int32_t> ids_of(const RequestResult& r) {
  std::vector<int32_t> ids;
  for (const auto& t : r.tokens) ids.push_back(t.id);
  return ids;
}

const std::vector<std::string> kPrompts = {
    "Once upon a time", "The little dog", "Lily and Tom went", "One day, a big",
    "The sun was",      "A cat sat",      "Tim had a red",     "Mom said"};

TEST(Scheduler, ConcurrentGreedyEqualsAlone) {
  Fixture f;
  std::vector<int32_t> eos = f.model->info().eos_token_ids;
  eos.push_back(f.tokenizer->eos_id());
  std::vector<std::vector<int32_t>> expected;
  for (const auto& p : kPrompts) {
    expected.push_back(greedy_alone(*f.model, f.tokenizer->encode(p, true), 40, eos));
  }
  // Small prefill chunks make prompts of later requests interleave with decoding.
  Scheduler scheduler(*f.model, *f.tokenizer, {.parallel = 4, .prefill_chunk = 3});
  std::vector<std::shared_ptr<Outcome>> outcomes;
  std::vector<std::future<RequestResult>> futures;
  for (const auto& p : kPrompts) {
    auto o = std::make_shared<Outcome>();
    futures.push_back(o->promise.get_future());
    ASSERT_TRUE(scheduler.submit(make_request(f.tokenizer->encode(p, true), 40, o)));
    outcomes.push_back(o);
  }
  for (size_t i = 0; i < kPrompts.size(); ++i) {
    const RequestResult r = futures[i].get();
    EXPECT_EQ(ids_of(r), expected[i]) << kPrompts[i];
    EXPECT_EQ(r.text,
              continuation(*f.tokenizer, f.tokenizer->encode(kPrompts[i], true), expected[i]));
    EXPECT_EQ(outcomes[i]->streamed, r.text);
    EXPECT_EQ(r.cause, expected[i].size() == 40 ? StopCause::kMaxTokens : StopCause::kEos);
  }
  const auto stats = scheduler.stats();
  EXPECT_EQ(stats.active, 0);
  EXPECT_EQ(stats.queued, 0);
}

TEST(Scheduler, ConcurrentGreedyEqualsSessionGenerate) {
  Fixture f;
  auto session = SessionBuilder().build(models::load(stories_path()));
  Scheduler scheduler(*f.model, *f.tokenizer, {.parallel = 8, .prefill_chunk = 5});
  std::vector<std::future<RequestResult>> futures;
  for (const auto& p : kPrompts) {
    auto o = std::make_shared<Outcome>();
    futures.push_back(o->promise.get_future());
    ASSERT_TRUE(scheduler.submit(make_request(f.tokenizer->encode(p, true), 48, o)));
  }
  for (size_t i = 0; i < kPrompts.size(); ++i) {
    const GenerateResponse alone = session.generate({.prompt = kPrompts[i], .max_tokens = 48});
    const RequestResult together = futures[i].get();
    EXPECT_EQ(together.text, alone.text) << kPrompts[i];
    EXPECT_EQ(runtime::finish_reason(together.cause), to_string(alone.finish_reason));
  }
}

TEST(Scheduler, ReusesTheLongestCachedPrefix) {
  Fixture f;
  std::vector<int32_t> eos = f.model->info().eos_token_ids;
  Scheduler scheduler(*f.model, *f.tokenizer, {.parallel = 2});
  const std::vector<int32_t> first = f.tokenizer->encode("Once upon a time there was", true);
  auto o1 = std::make_shared<Outcome>();
  auto fut1 = o1->promise.get_future();
  ASSERT_TRUE(scheduler.submit(make_request(first, 8, o1)));
  const RequestResult r1 = fut1.get();
  EXPECT_EQ(r1.cached_prompt_tokens, 0);

  // A follow-up turn: the first prompt, its answer and more text.
  std::vector<int32_t> second = first;
  for (const auto& t : r1.tokens) second.push_back(t.id);
  const std::vector<int32_t> more = f.tokenizer->encode(" and then", false);
  second.insert(second.end(), more.begin(), more.end());
  auto o2 = std::make_shared<Outcome>();
  auto fut2 = o2->promise.get_future();
  ASSERT_TRUE(scheduler.submit(make_request(second, 12, o2)));
  const RequestResult r2 = fut2.get();
  // The first request's prompt and all but its last generated token are in that slot's cache.
  EXPECT_EQ(r2.cached_prompt_tokens, static_cast<int64_t>(first.size() + r1.tokens.size() - 1));
  EXPECT_EQ(ids_of(r2), greedy_alone(*f.model, second, 12, eos));
}

TEST(Scheduler, StopStringEndsTheTextBeforeIt) {
  Fixture f;
  std::vector<int32_t> eos = f.model->info().eos_token_ids;
  const std::vector<int32_t> prompt = f.tokenizer->encode("Once upon a time", true);
  const std::string full =
      continuation(*f.tokenizer, prompt, greedy_alone(*f.model, prompt, 40, eos));
  ASSERT_GT(full.size(), 20u);
  const std::string stop = full.substr(10, 4);  // spans tokens in general
  Scheduler scheduler(*f.model, *f.tokenizer, {.parallel = 1});
  auto o = std::make_shared<Outcome>();
  auto fut = o->promise.get_future();
  GenerationRequest request = make_request(prompt, 40, o);
  request.stop = {"never appears", stop};
  ASSERT_TRUE(scheduler.submit(std::move(request)));
  const RequestResult r = fut.get();
  EXPECT_EQ(r.cause, StopCause::kStopString);
  EXPECT_EQ(r.text, full.substr(0, full.find(stop)));
  EXPECT_EQ(o->streamed, r.text);
}

TEST(Scheduler, CancelFreesTheSlotAtOnce) {
  Fixture f;
  Scheduler scheduler(*f.model, *f.tokenizer, {.parallel = 1});
  const std::vector<int32_t> prompt = f.tokenizer->encode("Once upon a time", true);
  auto long_one = std::make_shared<Outcome>();
  std::promise<void> started;
  auto started_future = started.get_future();
  auto fut_long = long_one->promise.get_future();
  GenerationRequest request = make_request(prompt, -1, long_one);
  bool first = true;
  request.on_chunk = [&](const runtime::StreamChunk&) {
    if (std::exchange(first, false)) started.set_value();
  };
  request.sampling.logit_bias = {{f.tokenizer->eos_id(), -1e9f}};  // never ends by itself
  const auto id = scheduler.submit(std::move(request));
  ASSERT_TRUE(id);
  started_future.get();
  auto next = std::make_shared<Outcome>();
  auto fut_next = next->promise.get_future();
  ASSERT_TRUE(scheduler.submit(make_request(prompt, 5, next)));
  scheduler.cancel(*id);
  EXPECT_EQ(fut_long.get().cause, StopCause::kCancelled);
  EXPECT_EQ(fut_next.get().tokens.size(), 5u);
}

// What af-server's shutdown relies on: cancel_all ends the running request and every queued one
// (each on_done runs once, kCancelled, none of them generated to its end), and the scheduler
// serves new requests afterwards.
TEST(Scheduler, CancelAllEndsRunningAndQueuedRequests) {
  Fixture f;
  Scheduler scheduler(*f.model, *f.tokenizer, {.parallel = 1, .max_queue = 8});
  const std::vector<int32_t> prompt = f.tokenizer->encode("Once upon a time", true);
  // The first request's first chunk holds the scheduler thread until cancel_all has been
  // called, so the cancellation meets it running, whatever the machine's speed.
  std::promise<void> started, cancelled;
  auto started_future = started.get_future();
  std::shared_future<void> cancelled_future = cancelled.get_future().share();
  std::vector<std::future<RequestResult>> futures;
  for (int i = 0; i < 4; ++i) {
    auto o = std::make_shared<Outcome>();
    futures.push_back(o->promise.get_future());
    GenerationRequest request = make_request(prompt, -1, o);
    if (i == 0) {
      request.on_chunk = [&started, cancelled_future,
                          first = true](const runtime::StreamChunk&) mutable {
        if (!std::exchange(first, false)) return;
        started.set_value();
        cancelled_future.wait();
      };
    }
    request.sampling.logit_bias = {{f.tokenizer->eos_id(), -1e9f}};  // runs to a full context
    ASSERT_TRUE(scheduler.submit(std::move(request)));
  }
  started_future.get();
  const auto t0 = std::chrono::steady_clock::now();
  scheduler.cancel_all();
  cancelled.set_value();
  for (auto& fut : futures) {
    ASSERT_EQ(fut.wait_for(std::chrono::seconds(5)), std::future_status::ready);
    const RequestResult r = fut.get();
    EXPECT_EQ(r.cause, StopCause::kCancelled);
    EXPECT_LT(static_cast<int64_t>(r.tokens.size()) + r.prompt_tokens, scheduler.slot_context());
  }
  EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::seconds(1));
  const auto stats = scheduler.stats();
  EXPECT_EQ(stats.active, 0);
  EXPECT_EQ(stats.queued, 0);
  auto next = std::make_shared<Outcome>();
  auto fut_next = next->promise.get_future();
  ASSERT_TRUE(scheduler.submit(make_request(prompt, 5, next)));
  EXPECT_EQ(fut_next.get().tokens.size(), 5u);
}

TEST(Scheduler, RefusesWhenTheQueueIsFullAndRejectsImpossibleRequests) {
  Fixture f;
  Scheduler scheduler(*f.model, *f.tokenizer, {.parallel = 1, .max_queue = 2});
  const std::vector<int32_t> prompt = f.tokenizer->encode("Once upon a time", true);
  std::vector<std::future<RequestResult>> futures;
  int refused = 0;
  for (int i = 0; i < 10; ++i) {
    auto o = std::make_shared<Outcome>();
    auto fut = o->promise.get_future();
    if (scheduler.submit(make_request(prompt, 30, o))) {
      futures.push_back(std::move(fut));
    } else {
      ++refused;
    }
  }
  EXPECT_GE(refused, 7);
  for (auto& fut : futures) EXPECT_EQ(fut.get().tokens.size() > 0, true);

  const int64_t ctx = scheduler.slot_context();
  auto o = std::make_shared<Outcome>();
  EXPECT_THROW(scheduler.submit(make_request({}, 5, o)), Error);
  EXPECT_THROW(scheduler.submit(make_request(std::vector<int32_t>(ctx, 1), 1, o)), Error);
  EXPECT_THROW(scheduler.submit(make_request(prompt, ctx, o)), Error);
  EXPECT_THROW(scheduler.submit(make_request({1, 1 << 30}, 5, o)), Error);
  GenerationRequest bad = make_request(prompt, 5, o);
  bad.sampling.top_p = 2.0f;
  EXPECT_THROW(scheduler.submit(std::move(bad)), Error);
}

TEST(Scheduler, SeededSamplingIsReproducibleUnderLoad) {
  Fixture f;
  Scheduler scheduler(*f.model, *f.tokenizer, {.parallel = 3, .prefill_chunk = 4});
  const std::vector<int32_t> prompt = f.tokenizer->encode("Once upon a time", true);
  auto run = [&](uint64_t seed) {
    auto o = std::make_shared<Outcome>();
    auto fut = o->promise.get_future();
    GenerationRequest r = make_request(prompt, 20, o);
    r.sampling.temperature = 1.0f;
    r.sampling.seed = seed;
    EXPECT_TRUE(scheduler.submit(std::move(r)));
    return fut;
  };
  auto a = run(7), b = run(8), c = run(7);
  const std::string ta = a.get().text, tb = b.get().text, tc = c.get().text;
  EXPECT_EQ(ta, tc);
  EXPECT_NE(ta, tb);
}

TEST(Scheduler, JsonObjectConstrainsTheText) {
  Fixture f;
  Scheduler scheduler(*f.model, *f.tokenizer, {.parallel = 2});
  for (uint64_t seed : {1, 2, 3}) {
    auto o = std::make_shared<Outcome>();
    auto fut = o->promise.get_future();
    GenerationRequest r = make_request(f.tokenizer->encode("Once upon a time", true), 200, o);
    r.json_object = true;
    r.sampling.temperature = 0.8f;
    r.sampling.seed = seed;
    ASSERT_TRUE(scheduler.submit(std::move(r)));
    const RequestResult result = fut.get();
    // Cut short by max_tokens or closed: always a prefix of one JSON object.
    runtime::JsonMatcher json(runtime::json_object_grammar());
    EXPECT_TRUE(json.push(result.text)) << result.text;
    ASSERT_TRUE(result.cause == StopCause::kJsonComplete || result.cause == StopCause::kMaxTokens)
        << static_cast<int>(result.cause);
    EXPECT_EQ(json.closed(), result.cause == StopCause::kJsonComplete) << result.text;
    EXPECT_EQ(result.text[result.text.find_first_not_of(" \n\r\t")], '{') << result.text;
  }
}

// json_schema: the grammar forces the document to end (EOS only once it is whole), so every
// seed gives a closed document that parses and has the schema's shape.
TEST(Scheduler, JsonSchemaForcesAValidDocument) {
  Fixture f;
  Scheduler scheduler(*f.model, *f.tokenizer, {.parallel = 2});
  const auto grammar = runtime::compile_json_schema_text(R"({"type": "object",
      "properties": {"mood": {"enum": ["happy", "sad"]}, "n": {"type": "integer", "maximum": 99},
                     "ok": {"type": "boolean"}, "name": {"type": "string", "maxLength": 8}},
      "required": ["mood", "n", "ok", "name"]})");
  for (uint64_t seed = 1; seed <= 6; ++seed) {
    auto o = std::make_shared<Outcome>();
    auto fut = o->promise.get_future();
    GenerationRequest r = make_request(f.tokenizer->encode("Once upon a time", true), 400, o);
    r.json_schema = grammar;
    r.sampling.temperature = 1.0f;
    r.sampling.seed = seed;
    ASSERT_TRUE(scheduler.submit(std::move(r)));
    const RequestResult result = fut.get();
    ASSERT_TRUE(result.cause == StopCause::kJsonComplete || result.cause == StopCause::kEos)
        << static_cast<int>(result.cause) << " " << result.text;
    runtime::JsonMatcher json(grammar);
    EXPECT_TRUE(json.push(result.text) && json.closed()) << result.text;
    const auto doc = nlohmann::json::parse(result.text);
    EXPECT_TRUE(doc["mood"] == "happy" || doc["mood"] == "sad") << result.text;
    EXPECT_LE(doc["n"].get<int64_t>(), 99);
    EXPECT_TRUE(doc["ok"].is_boolean());
    EXPECT_EQ(doc.size(), 4u);
  }
}

}  // namespace
}  // namespace af
