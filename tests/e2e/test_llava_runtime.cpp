// The runtime side of LLaVA against transformers (tiny random fixtures, the image features
// transformers computed standing in for the encoder): both weight prefixes, placeholder
// expansion, logits at every position, greedy ids, chat content parts, the prefix and encoder
// caches, and the errors of bad prompts.
#include <algorithm>
#include <cmath>

#include <fstream>
#include <future>
#include <utility>
#include <vector>
#include "af/core/error.hpp"

#include "af/runtime/prompt.hpp"
#include "af/runtime/scheduler.hpp"
#include "af/runtime/session.hpp"
#include "llava_test_encoder.hpp"

namespace af {
namespace {

using test::llava_reference;
using test::load_llava;
using test::test_image;

size_t argmax(const float* row, int64_t n) {
  return static_cast<size_t>(std::max_element(row, row + n) - row);
}

// Logits at every position of the fixture's two-image prompt equal transformers'.
void expect_reference_logits(const std::string& name) {
  auto model = load_llava(name);
  const nlohmann::json ref = llava_reference(name);
  const auto ids = ref["ids"].get<std::vector<int32_t>>();
  const std::vector<modalities::Image> images = {test_image(0), test_image(1)};
  const runtime::ImagePrompt placed =
      runtime::expand_image_tokens(ids, model->image_token_id(), std::vector<int64_t>{4, 4});
  ASSERT_EQ(placed.ids, ref["expanded_ids"].get<std::vector<int32_t>>());
  std::vector<float> rows;
  for (const auto& image : images) {
    const models::ImageFeatures f = model->image_encoder().encode(image);
    rows.insert(rows.end(), f.rows.begin(), f.rows.end());
  }
  const std::vector<float> got = model->forward_embeds(placed.ids, true, {placed.mask, rows});
  const std::vector<float> want = test::read_f32(test::llava_fixture(name) + "/logits.bin");
  ASSERT_EQ(got.size(), want.size());
  const int64_t vocab = model->config().vocab_size;
  double diff = 0;
  for (size_t i = 0; i < got.size(); ++i)
    diff = std::max<double>(diff, std::fabs(got[i] - want[i]));
  EXPECT_LT(diff, 1e-4) << name;
  for (size_t t = 0; t < placed.ids.size(); ++t) {
    EXPECT_EQ(argmax(got.data() + t * vocab, vocab), argmax(want.data() + t * vocab, vocab))
        << name << " position " << t;
  }
}

TEST(LlavaRuntime, LogitsEqualTransformersWithTransformers5Names) {
  expect_reference_logits("llava_rt");
}

TEST(LlavaRuntime, LogitsEqualTransformersWithLegacyNamesAndQwen2Text) {
  expect_reference_logits("llava_rt_legacy");
}

TEST(LlavaRuntime, TextGgufWithAnMmprojTakesItsImageTokenFromTheVocabulary) {
  // llama.cpp's converter writes the text model of a LLaVA checkpoint as a plain Llama GGUF;
  // the image token comes from its vocabulary ("<image>"). The stand-in encoder ignores the
  // mmproj file it is given (here the same GGUF).
  const std::string gguf = test::llava_fixture() + "/text.gguf";
  models::LoadOptions options;
  options.num_threads = 2;
  auto model = models::load_multimodal(
      gguf, gguf, options,
      [](const io::ModelFiles&, const io::HfConfig&, std::shared_ptr<Backend>,
         const models::LoadOptions&) -> std::unique_ptr<models::ImageEncoder> {
        return std::make_unique<test::FixtureEncoder>(test::llava_fixture(), 4, 32,
                                                      std::make_shared<std::atomic<int>>(0));
      });
  EXPECT_EQ(model->image_token_id(), 512);
  const nlohmann::json ref = llava_reference();
  const runtime::ImagePrompt placed = runtime::expand_image_tokens(
      ref["ids"].get<std::vector<int32_t>>(), 512, std::vector<int64_t>{4, 4});
  std::vector<float> rows = test::read_f32(test::llava_fixture() + "/features_0.bin");
  const std::vector<float> second = test::read_f32(test::llava_fixture() + "/features_1.bin");
  rows.insert(rows.end(), second.begin(), second.end());
  const std::vector<float> got = model->forward_embeds(placed.ids, true, {placed.mask, rows});
  const std::vector<float> want = test::read_f32(test::llava_fixture() + "/logits.bin");
  ASSERT_EQ(got.size(), want.size());
  double diff = 0;
  for (size_t i = 0; i < got.size(); ++i)
    diff = std::max<double>(diff, std::fabs(got[i] - want[i]));
  EXPECT_LT(diff, 1e-4);
}

TEST(LlavaRuntime, GreedyIdsEqualTransformersGenerateExpandedOrNot) {
  const nlohmann::json ref = llava_reference();
  const auto want = ref["greedy"]["ids"].get<std::vector<int32_t>>();
  auto session = SessionBuilder().build(load_llava());
  GenerateRequest req;
  req.max_tokens = static_cast<int32_t>(want.size());
  req.ignore_eos = true;
  req.images = {test_image(2), test_image(0)};
  req.prompt_ids = ref["greedy"]["prompt_ids"].get<std::vector<int32_t>>();  // expanded
  EXPECT_EQ(session.generate(req).ids, want);
  session.reset();
  req.prompt_ids = {1, 512, 300, 301, 512, 302};  // one placeholder per image
  const GenerateResponse res = session.generate(req);
  EXPECT_EQ(res.ids, want);
  EXPECT_EQ(res.prompt_tokens, 12);
}

TEST(LlavaRuntime, SameImageTwiceReencodesAndRefillsNothingOtherImageSharesNoKv) {
  auto calls = std::make_shared<std::atomic<int>>(0);
  auto session = SessionBuilder().build(load_llava("llava_rt", calls));
  GenerateRequest req;
  req.max_tokens = 2;
  req.prompt_ids = {1, 512, 300, 301, 302};
  req.images = {test_image(0)};
  GenerateResponse res = session.generate(req);
  EXPECT_EQ(res.prompt_tokens, 8);
  EXPECT_EQ(res.cached_tokens, 0);
  EXPECT_EQ(calls->load(), 1);

  // A second question about the same image: no encoder call, no image row prefilled.
  req.prompt_ids = {1, 512, 300, 301, 303, 304};
  res = session.generate(req);
  EXPECT_EQ(calls->load(), 1);
  EXPECT_EQ(session.encoder_calls(), 1u);
  EXPECT_EQ(res.cached_tokens, 7);  // BOS + 4 image rows + 300 301
  EXPECT_EQ(res.prefill_tokens, 2);

  // Another image behind the very same placeholder ids: only BOS is shared.
  req.images = {test_image(1)};
  res = session.generate(req);
  EXPECT_EQ(calls->load(), 2);
  EXPECT_EQ(res.cached_tokens, 1);
  // Its logits are those of a fresh session (no KV of image 0 leaked).
  auto fresh = SessionBuilder().build(load_llava());
  req.logprobs = true;
  session.reset();
  const GenerateResponse a = session.generate(req);
  const GenerateResponse b = fresh.generate(req);
  EXPECT_EQ(a.ids, b.ids);
  ASSERT_FALSE(a.tokens.empty());
  EXPECT_EQ(a.tokens[0].logprob, b.tokens[0].logprob);

  // Back to image 0: encoder output comes from the LRU cache (KV was replaced).
  req.images = {test_image(0)};
  res = session.generate(req);
  EXPECT_EQ(calls->load(), 2);
  EXPECT_EQ(res.cached_tokens, 1);
}

TEST(LlavaRuntime, EncoderCacheBoundEvictsLeastRecentlyUsed) {
  auto calls = std::make_shared<std::atomic<int>>(0);
  auto model = load_llava("llava_rt", calls);
  runtime::EncoderCache cache(/*max_bytes=*/2 * 4 * 32 * sizeof(float));  // two images
  models::ImageEncoder& encoder = model->image_encoder();
  cache.get(encoder, test_image(0));
  cache.get(encoder, test_image(1));
  cache.get(encoder, test_image(0));  // hit; image 1 is now the least recent
  EXPECT_EQ(calls->load(), 2);
  cache.get(encoder, test_image(2));  // evicts image 1
  EXPECT_EQ(cache.bytes(), 2u * 4 * 32 * sizeof(float));
  cache.get(encoder, test_image(0));
  EXPECT_EQ(calls->load(), 3);
  cache.get(encoder, test_image(1));
  EXPECT_EQ(calls->load(), 4);
  EXPECT_EQ(cache.encoder_calls(), 4u);
}

// GenerateRequest::on_prefill (af-cli's progress bar) runs a long prefill in chunks of 256
// positions; image rows that straddle a chunk boundary get their own rows (the same logprobs
// as one pass) and each image is encoded once, not once per chunk.
TEST(LlavaRuntime, ChunkedPrefillWithProgressGivesTheSameTokensAcrossImageRows) {
  std::vector<int32_t> prompt = {1};
  for (int i = 0; i < 252; ++i) prompt.push_back(300 + i % 50);
  prompt.push_back(512);  // its 4 rows: positions 253..256, across the first chunk's end
  for (int i = 0; i < 20; ++i) prompt.push_back(350 + i);
  prompt.push_back(512);
  for (int i = 0; i < 10; ++i) prompt.push_back(400 + i);
  GenerateRequest req;
  req.max_tokens = 4;
  req.ignore_eos = true;
  req.logprobs = true;
  req.prompt_ids = prompt;
  req.images = {test_image(0), test_image(1)};
  auto whole = SessionBuilder().build(load_llava("llava_rt", nullptr, /*context=*/400));
  const GenerateResponse want = whole.generate(req);
  ASSERT_EQ(want.prompt_tokens, 291);

  auto calls = std::make_shared<std::atomic<int>>(0);
  auto chunked = SessionBuilder().build(load_llava("llava_rt", calls, /*context=*/400));
  std::vector<std::pair<int64_t, int64_t>> progress;
  req.on_prefill = [&progress](int64_t done, int64_t total) { progress.emplace_back(done, total); };
  const GenerateResponse got = chunked.generate(req);
  const std::vector<std::pair<int64_t, int64_t>> steps = {{256, 291}, {291, 291}};
  EXPECT_EQ(progress, steps);
  EXPECT_EQ(calls->load(), 2);
  EXPECT_EQ(got.ids, want.ids);
  ASSERT_EQ(got.tokens.size(), want.tokens.size());
  for (size_t i = 0; i < got.tokens.size(); ++i)
    EXPECT_NEAR(got.tokens[i].logprob, want.tokens[i].logprob, 1e-5) << i;
  EXPECT_EQ(chunked.cached_ids().size(), whole.cached_ids().size());
}

TEST(LlavaRuntime, TextPromptGetsTheImageAfterBos) {
  auto session = SessionBuilder().build(load_llava());
  GenerateRequest req;
  req.max_tokens = 1;
  req.prompt = "Once upon";
  req.images = {test_image(0)};
  const GenerateResponse res = session.generate(req);
  const std::vector<int32_t>& held = session.cached_ids();
  ASSERT_GE(held.size(), 6u);
  EXPECT_EQ(held[0], 1);
  EXPECT_EQ(std::vector<int32_t>(held.begin() + 1, held.begin() + 5), std::vector<int32_t>(4, 512));
  EXPECT_NE(held[5], 512);
  EXPECT_EQ(res.prompt_tokens, static_cast<int64_t>(held.size()));
}

TEST(LlavaRuntime, ChatPassesImagePartsAsTransformers) {
  const nlohmann::json ref = llava_reference();
  auto session = SessionBuilder().parse_special_in_content(true).build(load_llava());
  ChatMessage message{"user", "Once upon", {test_image(0)}};
  EXPECT_EQ(session.render_chat({message}, true), ref["chat"]["text"].get<std::string>());
  GenerateRequest req;
  req.max_tokens = 1;
  req.images = {test_image(0)};
  session.chat("Once upon", req);
  const runtime::ImagePrompt placed = runtime::expand_image_tokens(
      ref["chat"]["ids"].get<std::vector<int32_t>>(), 512, std::vector<int64_t>{4});
  const std::vector<int32_t>& held = session.cached_ids();
  ASSERT_GE(held.size(), placed.ids.size());
  EXPECT_EQ(std::vector<int32_t>(held.begin(), held.begin() + placed.ids.size()), placed.ids);
  ASSERT_EQ(session.history().size(), 2u);
  EXPECT_EQ(session.history()[0].images.size(), 1u);
}

// A message of content parts as chat_cases.json holds them: the text joined, an image per
// {"type": "image"} at the length of the text before it.
ChatMessage message_of(const nlohmann::json& m) {
  ChatMessage out{m["role"].get<std::string>(), ""};
  if (m["content"].is_string()) {
    out.content = m["content"].get<std::string>();
    return out;
  }
  for (const auto& part : m["content"]) {
    if (part["type"] == "image") {
      out.images.push_back(test_image(static_cast<int>(out.images.size())));
      out.image_offsets.push_back(out.content.size());
    } else {
      out.content += part["text"].get<std::string>();
    }
  }
  return out;
}

TEST(LlavaRuntime, ChatKeepsTheOrderOfInterleavedImageAndTextPartsAsTransformers) {
  std::ifstream in(test::llava_fixture() + "/chat_cases.json");
  const nlohmann::json cases = nlohmann::json::parse(in);
  ASSERT_EQ(cases.size(), 3u);
  auto session = SessionBuilder().build(load_llava());
  for (const auto& c : cases) {
    std::vector<ChatMessage> messages;
    for (const auto& m : c["messages"]) messages.push_back(message_of(m));
    EXPECT_EQ(session.render_chat(messages, true), c["text"].get<std::string>()) << c.dump();
  }

  // Offsets that do not fit the content are refused, naming the message and image.
  ChatMessage bad{"user", "abc", {test_image(0), test_image(1)}, {2, 1}};
  EXPECT_THROW(session.render_chat({bad}, true), Error);
  bad.image_offsets = {0, 4};
  EXPECT_THROW(session.render_chat({bad}, true), Error);
  bad.image_offsets = {0};
  EXPECT_THROW(session.render_chat({bad}, true), Error);
}

TEST(LlavaRuntime, BadPromptsGiveClearErrorsAndTheSessionKeepsWorking) {
  auto session = SessionBuilder().build(load_llava("llava_rt", nullptr, /*context=*/16));
  GenerateRequest req;
  req.max_tokens = 1;
  const auto code_of = [&](const GenerateRequest& r) {
    try {
      session.generate(r);
    } catch (const Error& e) {
      return e.code();
    }
    return ErrorCode::kInternal;  // no error
  };
  req.prompt_ids = {1, 512, 300};
  req.images = {test_image(0), test_image(1)};  // more images than placeholders
  EXPECT_EQ(code_of(req), ErrorCode::kInvalidArgument);
  req.prompt_ids = {1, 512, 300, 512};
  req.images = {test_image(0)};  // more placeholders than images
  EXPECT_EQ(code_of(req), ErrorCode::kInvalidArgument);
  req.prompt_ids = {1, 512, 300, 512, 301, 512, 302, 512};
  req.images = {test_image(0), test_image(1), test_image(2), test_image(0)};  // 20 > 16
  EXPECT_EQ(code_of(req), ErrorCode::kOutOfRange);
  req.prompt_ids = {1, 512, 300};
  req.images = {test_image(0)};
  EXPECT_EQ(session.generate(req).prompt_tokens, 6);

  // An image to a text-only model.
  models::LoadOptions options;
  options.num_threads = 2;
  auto text = SessionBuilder().build(
      models::load(test::testdata_dir() + "/models/stories260K-hf", options));
  req.prompt_ids = {1, 5, 6};
  EXPECT_THROW(
      {
        try {
          text.generate(req);
        } catch (const Error& e) {
          EXPECT_EQ(e.code(), ErrorCode::kUnsupported);
          EXPECT_NE(std::string(e.what()).find("text-only"), std::string::npos) << e.what();
          throw;
        }
      },
      Error);
  EXPECT_THROW(models::load_multimodal(test::fixtures_dir() + "/models/llama_gqa", "", options),
               Error);
}

TEST(LlavaRuntime, EncoderOfAnotherHiddenSizeIsRefused) {
  try {
    load_llava("llava_rt", nullptr, 0, /*hidden_override=*/48);
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kFormat);
    EXPECT_NE(std::string(e.what()).find("hidden_size"), std::string::npos) << e.what();
  }
}

// Submits and waits; the generated ids and the result.
runtime::RequestResult run_request(runtime::Scheduler& scheduler, std::vector<int32_t> prompt,
                                   std::vector<modalities::Image> images, int64_t max_tokens) {
  auto promise = std::make_shared<std::promise<runtime::RequestResult>>();
  std::future<runtime::RequestResult> done = promise->get_future();
  runtime::GenerationRequest req;
  req.prompt = std::move(prompt);
  req.images = std::move(images);
  req.max_tokens = max_tokens;
  req.on_done = [promise](const runtime::RequestResult& r) { promise->set_value(r); };
  EXPECT_TRUE(scheduler.submit(std::move(req)).has_value());
  return done.get();
}

std::vector<int32_t> ids_of(const runtime::RequestResult& r) {
  std::vector<int32_t> ids;
  for (const auto& t : r.tokens) ids.push_back(t.id);
  return ids;
}

TEST(LlavaScheduler, GreedyIdsAndKvKeyedByImageContent) {
  const nlohmann::json ref = llava_reference();
  auto calls = std::make_shared<std::atomic<int>>(0);
  auto model = load_llava("llava_rt", calls);
  const auto tokenizer = tok::Tokenizer::load(test::llava_fixture());
  runtime::SchedulerOptions options;
  options.parallel = 1;  // one slot: every request meets the previous one's cache
  options.eos_ids = {9999};
  runtime::Scheduler scheduler(*model, *tokenizer, options);

  // Greedy ids equal transformers generate (EOS id 2 is an ordinary token here).
  const auto want = ref["greedy"]["ids"].get<std::vector<int32_t>>();
  runtime::RequestResult r =
      run_request(scheduler, {1, 512, 300, 301, 512, 302}, {test_image(2), test_image(0)}, 10);
  EXPECT_EQ(ids_of(r), want);
  EXPECT_EQ(r.prompt_tokens, 12);
  EXPECT_EQ(calls->load(), 2);
  EXPECT_EQ(scheduler.stats().image_encodes, 2u);  // what af-server's /metrics reports

  // The same images again: the whole prompt but its last id comes from the slot's cache.
  r = run_request(scheduler, {1, 512, 300, 301, 512, 302}, {test_image(2), test_image(0)}, 10);
  EXPECT_EQ(ids_of(r), want);
  EXPECT_EQ(r.cached_prompt_tokens, 11);
  EXPECT_EQ(calls->load(), 2);
  EXPECT_EQ(scheduler.stats().image_encodes, 2u);

  // Other content behind the same placeholder ids shares only BOS, and gives what a fresh
  // session gives.
  r = run_request(scheduler, {1, 512, 300, 301, 512, 302}, {test_image(1), test_image(0)}, 4);
  EXPECT_EQ(r.cached_prompt_tokens, 1);
  EXPECT_EQ(calls->load(), 3);
  EXPECT_EQ(scheduler.stats().image_encodes, 3u);
  auto session = SessionBuilder().build(load_llava());
  GenerateRequest req;
  req.prompt_ids = {1, 512, 300, 301, 512, 302};
  req.images = {test_image(1), test_image(0)};
  req.max_tokens = 4;
  req.ignore_eos = true;
  EXPECT_EQ(ids_of(r), session.generate(req).ids);

  // Two requests batched together, different images behind the same ids: each gets what it
  // gets alone.
  runtime::SchedulerOptions two = options;
  two.parallel = 2;
  runtime::Scheduler batched(*model, *tokenizer, two);
  std::vector<std::future<runtime::RequestResult>> futures;
  for (int k : {1, 2}) {
    futures.push_back(std::async(std::launch::async, [&batched, k] {
      return run_request(batched, {1, 512, 300, 301, 512, 302}, {test_image(k), test_image(0)}, 4);
    }));
  }
  req.images = {test_image(2), test_image(0)};
  const std::vector<int32_t> alone_2 = session.generate(req).ids;
  EXPECT_EQ(ids_of(futures[0].get()), ids_of(r));
  EXPECT_EQ(ids_of(futures[1].get()), alone_2);

  // Placeholders without images, and images for a prompt with too few placeholders.
  runtime::GenerationRequest bad;
  bad.prompt = {1, 512, 300};
  EXPECT_THROW(scheduler.submit(bad), Error);
  bad.images = {test_image(0), test_image(1)};
  EXPECT_THROW(scheduler.submit(bad), Error);
}

}  // namespace
}  // namespace af
