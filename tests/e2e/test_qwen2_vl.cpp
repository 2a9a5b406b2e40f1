// Qwen2-VL and Qwen2.5-VL against transformers on tiny random models
// (tools/make_qwen2_vl_fixtures.py models): the merged image features (vision tower + 2-D RoPE +
// window attention + PatchMerger) of three images of different sizes, through the library and
// through af-cli image-features; the M-RoPE positions (get_rope_index), the logits of every
// position and greedy generate ids with one image and with two images of different sizes, alone
// and batched through forward_batch (the server's continuous batching path).
#include <cmath>
#include <filesystem>
#include <future>
#include <sstream>

#include <nlohmann/json.hpp>

#include "af/io/hf_config.hpp"
#include "af/io/model_files.hpp"
#include "af/modalities/image.hpp"
#include "af/models/causal_lm.hpp"
#include "af/models/image_encoder.hpp"
#include "af/models/model_files.hpp"
#include "af/models/multimodal.hpp"
#include "af/models/qwen2_vl.hpp"
#include "af/runtime/scheduler.hpp"
#include "af/runtime/session.hpp"
#include "af/tokenizer/tokenizer.hpp"
#include "test_util.hpp"

namespace af {
namespace {

std::string model_dir(const std::string& m) { return test::fixtures_dir() + "/models/" + m; }

std::string image_path(const nlohmann::json& e) {
  const std::string file = e["file"];
  return e["where"] == "shared" ? test::testdata_dir() + "/images/" + file
                                : test::fixtures_dir() + "/images/inputs/" + file;
}

bool shared_images() { return std::filesystem::is_directory(test::testdata_dir() + "/images"); }

nlohmann::json reference(const std::string& model) {
  return nlohmann::json::parse(test::read_text(model_dir(model) + "/reference.json"));
}

float max_diff(const float* a, const float* b, size_t n) {
  float worst = 0;
  for (size_t i = 0; i < n; ++i) worst = std::max(worst, std::fabs(a[i] - b[i]));
  return worst;
}

void check_features(const std::string& model) {
  SCOPED_TRACE(model);
  const nlohmann::json ref = reference(model);
  const std::vector<float> all = test::read_f32(model_dir(model) + "/features.f32");
  const io::ModelFiles files = models::open_model_files(model_dir(model));
  std::shared_ptr<Backend> backend = make_backend({Device::cpu(), 2, ""});
  auto encoder =
      models::load_image_encoder(files, io::HfConfig(files.config, files.path), backend, {});
  auto* qwen = dynamic_cast<models::Qwen2VLVisionEncoder*>(encoder.get());
  ASSERT_NE(qwen, nullptr);
  int checked = 0;
  for (const auto& e : ref["images"]) {
    if (e["where"] == "shared" && !shared_images()) continue;
    SCOPED_TRACE(e["file"].get<std::string>());
    const modalities::Image image = modalities::Image::load(image_path(e));
    const auto shape = e["features_shape"].get<std::vector<int64_t>>();
    EXPECT_EQ(encoder->num_image_tokens(image), shape[0]);
    const modalities::PixelValues pv = encoder->processor().preprocess(image);
    EXPECT_EQ(pv.grid_thw, e["grid_thw"].get<std::vector<int64_t>>());
    const models::ImageFeatures f = encoder->encode(image);
    ASSERT_EQ(f.n_tokens, shape[0]);
    ASSERT_EQ(f.hidden, shape[1]);
    const float worst =
        max_diff(f.rows.data(), all.data() + e["features_offset"].get<size_t>(), f.rows.size());
    EXPECT_LE(worst, 1e-4f);
    ++checked;
  }
  EXPECT_GE(checked, 2);
  // A grid that does not match the pixel values is refused before any work.
  const std::vector<float> patches(10);
  const int64_t grid[] = {1, 2, 2};
  EXPECT_THROW(qwen->encode_patches(patches, grid), Error);
}

TEST(Qwen2VLVision, FeaturesMatchTransformers) { check_features("qwen2_vl"); }

TEST(Qwen2VLVision, Qwen25WindowAttentionFeaturesMatchTransformers) {
  check_features("qwen2_5_vl");
}

// af-cli image-features on two images: one line per merged token, in the order given.
TEST(Qwen2VLVision, CliImageFeaturesPrintsMergedRows) {
  const std::string model = "qwen2_5_vl";
  const nlohmann::json ref = reference(model);
  const std::vector<float> all = test::read_f32(model_dir(model) + "/features.f32");
  const nlohmann::json& a = ref["images"][1];
  const nlohmann::json& b = ref["images"][2];
  const test::ShellResult r =
      test::run_shell(std::string(AF_CLI_PATH) + " image-features -t 2 -m '" + model_dir(model) +
                      "' --image '" + image_path(a) + "' --image '" + image_path(b) + "'");
  ASSERT_EQ(r.status, 0);
  std::istringstream in(r.out);
  std::vector<float> got;
  size_t lines = 0;
  for (std::string line; std::getline(in, line); ++lines) {
    std::istringstream row(line);
    for (std::string tok; row >> tok;) got.push_back(std::strtof(tok.c_str(), nullptr));
  }
  const size_t na = a["features_shape"][0], nb = b["features_shape"][0];
  EXPECT_EQ(lines, na + nb);
  ASSERT_EQ(got.size(), (na + nb) * 64);
  EXPECT_LE(max_diff(got.data(), all.data() + a["features_offset"].get<size_t>(), na * 64), 1e-4f);
  EXPECT_LE(
      max_diff(got.data() + na * 64, all.data() + b["features_offset"].get<size_t>(), nb * 64),
      1e-4f);
}

// af-cli logits --image on the two-image prompt (already expanded): M-RoPE positions computed
// by the CLI, one line per position, within 1e-4 of transformers.
TEST(Qwen2VLModel, CliLogitsWithTwoImagesMatchTransformers) {
  const std::string model = "qwen2_5_vl";
  const nlohmann::json ref = reference(model);
  const nlohmann::json& prompt = ref["prompts"][1];
  std::string ids;
  for (int32_t id : prompt["input_ids"].get<std::vector<int32_t>>())
    ids += std::to_string(id) + " ";
  std::string cmd =
      std::string(AF_CLI_PATH) + " logits -t 2 -m '" + model_dir(model) + "' --ids '" + ids + "'";
  for (const auto& name : prompt["images"])
    for (const auto& e : ref["images"])
      if (e["file"] == name) cmd += " --image '" + image_path(e) + "'";
  const test::ShellResult r = test::run_shell(cmd);
  ASSERT_EQ(r.status, 0);
  std::vector<float> got;
  std::istringstream in(r.out);
  for (std::string tok; in >> tok;) got.push_back(std::strtof(tok.c_str(), nullptr));
  const std::vector<float> want =
      test::read_f32(model_dir(model) + "/" + prompt["logits_file"].get<std::string>());
  ASSERT_EQ(got.size(), want.size());
  EXPECT_LE(max_diff(got.data(), want.data(), got.size()), 1e-4f);
}

// A prompt of the fixture with its images encoded: the inputs forward_embeds takes.
struct PromptInputs {
  std::vector<int32_t> ids, positions;
  std::vector<uint8_t> mask;
  std::vector<float> rows;
  models::InputEmbeddings embeddings() const { return {mask, rows, positions}; }
};

PromptInputs prompt_inputs(models::MultimodalLM& mm, const nlohmann::json& ref,
                           const nlohmann::json& prompt) {
  PromptInputs in;
  in.ids = prompt["input_ids"].get<std::vector<int32_t>>();
  std::vector<modalities::Image> images;
  for (const auto& name : prompt["images"]) {
    for (const auto& e : ref["images"]) {
      if (e["file"] != name) continue;
      images.push_back(modalities::Image::load(image_path(e)));
      const models::ImageFeatures f = mm.image_encoder().encode(images.back());
      in.rows.insert(in.rows.end(), f.rows.begin(), f.rows.end());
    }
  }
  for (int32_t id : in.ids) in.mask.push_back(id == mm.image_token_id());
  in.positions = mm.mrope_positions(in.ids, images);
  return in;
}

int32_t argmax(const float* row, int64_t n) {
  return int32_t(std::max_element(row, row + n) - row);
}

bool prompts_need_shared(const nlohmann::json& prompt, const nlohmann::json& ref) {
  for (const auto& name : prompt["images"])
    for (const auto& e : ref["images"])
      if (e["file"] == name && e["where"] == "shared") return true;
  return false;
}

void check_logits_and_generate(const std::string& model_name) {
  SCOPED_TRACE(model_name);
  const nlohmann::json ref = reference(model_name);
  models::LoadOptions options;
  options.num_threads = 2;
  auto model = models::load(model_dir(model_name), options);
  auto* mm = dynamic_cast<models::MultimodalLM*>(model.get());
  ASSERT_NE(mm, nullptr);
  const int64_t vocab = model->config().vocab_size;
  int checked = 0;
  for (const auto& prompt : ref["prompts"]) {
    if (prompts_need_shared(prompt, ref) && !shared_images()) continue;
    SCOPED_TRACE(prompt["name"].get<std::string>());
    const PromptInputs in = prompt_inputs(*mm, ref, prompt);
    const auto expected_pos = prompt["position_ids"].get<std::vector<std::vector<int32_t>>>();
    const size_t n = in.ids.size();
    ASSERT_EQ(in.positions.size(), 3 * n);
    for (size_t c = 0; c < 3; ++c)
      EXPECT_EQ(
          std::vector<int32_t>(in.positions.begin() + c * n, in.positions.begin() + (c + 1) * n),
          expected_pos[c]);
    const std::vector<float> expected =
        test::read_f32(model_dir(model_name) + "/" + prompt["logits_file"].get<std::string>());
    model->truncate(0);
    const std::vector<float> logits = model->forward_embeds(in.ids, true, in.embeddings());
    ASSERT_EQ(logits.size(), expected.size());
    EXPECT_LE(max_diff(logits.data(), expected.data(), logits.size()), 1e-4f);
    for (size_t t = 0; t < n; ++t)
      EXPECT_EQ(argmax(&logits[t * vocab], vocab), argmax(&expected[t * vocab], vocab)) << t;
    // Greedy decoding: later ids carry no positions; the sequence continues at n_past + delta.
    const auto want = prompt["generate_ids"].get<std::vector<int32_t>>();
    std::vector<int32_t> got{argmax(&logits[(n - 1) * vocab], vocab)};
    while (got.size() < want.size()) {
      const std::vector<float> next = model->forward(std::span(&got.back(), 1), false);
      got.push_back(argmax(next.data(), vocab));
    }
    EXPECT_EQ(got, want);
    ++checked;
  }
  EXPECT_GE(checked, 1);
}

TEST(Qwen2VLModel, LogitsAndGreedyIdsMatchTransformers) { check_logits_and_generate("qwen2_vl"); }

TEST(Qwen2VLModel, Qwen25LogitsAndGreedyIdsMatchTransformers) {
  check_logits_and_generate("qwen2_5_vl");
}

// Both prompts in one forward_batch, then batched decode steps: each sequence keeps its own
// rope delta, so the batch gives the ids each prompt gives alone.
TEST(Qwen2VLModel, BatchedSequencesKeepTheirRopeDeltas) {
  if (!shared_images()) GTEST_SKIP() << "shared images absent (AF_TESTDATA)";
  const nlohmann::json ref = reference("qwen2_vl");
  models::LoadOptions options;
  options.num_threads = 2;
  auto model = models::load(model_dir("qwen2_vl"), options);
  auto* mm = dynamic_cast<models::MultimodalLM*>(model.get());
  ASSERT_NE(mm, nullptr);
  const int64_t vocab = model->config().vocab_size;
  std::vector<PromptInputs> inputs;
  std::vector<std::unique_ptr<models::SequenceState>> seqs;
  std::vector<models::BatchItem> items;
  for (const auto& prompt : ref["prompts"]) inputs.push_back(prompt_inputs(*mm, ref, prompt));
  for (const PromptInputs& in : inputs) {
    seqs.push_back(model->new_sequence(128));
    items.push_back({seqs.back().get(), in.ids, false, in.embeddings()});
  }
  std::vector<float> logits = model->forward_batch(items);
  std::vector<std::vector<int32_t>> got(items.size());
  for (int step = 0; step < 3; ++step) {
    std::vector<models::BatchItem> next;
    for (size_t i = 0; i < items.size(); ++i) {
      got[i].push_back(argmax(&logits[i * vocab], vocab));
      next.push_back({seqs[i].get(), std::span(&got[i].back(), 1), false, {}});
    }
    logits = model->forward_batch(next);
  }
  for (size_t i = 0; i < items.size(); ++i) {
    const auto want = ref["prompts"][i]["generate_ids"].get<std::vector<int32_t>>();
    const size_t k = std::min(want.size(), got[i].size());
    EXPECT_EQ(std::vector<int32_t>(got[i].begin(), got[i].begin() + k),
              std::vector<int32_t>(want.begin(), want.begin() + k))
        << i;
  }
}

// Through a Session (what af-cli run/chat use): M-RoPE positions sliced per prefill chunk, the
// decode continuing at n_past + delta, and a repeated request reusing the cached prefix (the
// image included) gives the same ids.
TEST(Qwen2VLModel, SessionGreedyIdsEqualGenerateAndSurvivePrefixReuse) {
  if (!shared_images()) GTEST_SKIP() << "shared images absent (AF_TESTDATA)";
  const nlohmann::json ref = reference("qwen2_vl");
  models::LoadOptions options;
  options.num_threads = 2;
  // The fixture has no tokenizer of its own; prompts are ids, so any one decodes them.
  Session session = SessionBuilder()
                        .tokenizer_path(test::testdata_dir() + "/models/stories260K-hf")
                        .build(models::load(model_dir("qwen2_vl"), options));
  for (const auto& prompt : ref["prompts"]) {
    SCOPED_TRACE(prompt["name"].get<std::string>());
    const auto want = prompt["generate_ids"].get<std::vector<int32_t>>();
    GenerateRequest req;
    req.max_tokens = static_cast<int32_t>(want.size());
    req.ignore_eos = true;
    req.prompt_ids = prompt["input_ids"].get<std::vector<int32_t>>();  // expanded
    for (const auto& name : prompt["images"])
      for (const auto& e : ref["images"])
        if (e["file"] == name) req.images.push_back(modalities::Image::load(image_path(e)));
    EXPECT_EQ(session.generate(req).ids, want);
    EXPECT_EQ(session.generate(req).ids, want);  // prefix reused
  }
}

// Through the Scheduler (af-server's continuous batching): both prompts at once in two slots,
// then the first again on a warm cache; each request's ids equal generate.
TEST(Qwen2VLModel, SchedulerGreedyIdsEqualGenerate) {
  if (!shared_images()) GTEST_SKIP() << "shared images absent (AF_TESTDATA)";
  const nlohmann::json ref = reference("qwen2_vl");
  models::LoadOptions load_options;
  load_options.num_threads = 2;
  auto model = models::load(model_dir("qwen2_vl"), load_options);
  const auto tokenizer = tok::Tokenizer::load(test::testdata_dir() + "/models/stories260K-hf");
  runtime::SchedulerOptions options;
  options.parallel = 2;
  options.eos_ids = {9999};
  runtime::Scheduler scheduler(*model, *tokenizer, options);
  const auto submit = [&](const nlohmann::json& prompt) {
    auto promise = std::make_shared<std::promise<runtime::RequestResult>>();
    std::future<runtime::RequestResult> done = promise->get_future();
    runtime::GenerationRequest req;
    req.prompt = prompt["input_ids"].get<std::vector<int32_t>>();
    for (const auto& name : prompt["images"])
      for (const auto& e : ref["images"])
        if (e["file"] == name) req.images.push_back(modalities::Image::load(image_path(e)));
    req.max_tokens = static_cast<int64_t>(prompt["generate_ids"].size());
    req.on_done = [promise](const runtime::RequestResult& r) { promise->set_value(r); };
    EXPECT_TRUE(scheduler.submit(std::move(req)).has_value());
    return done;
  };
  const auto ids_of = [](const runtime::RequestResult& r) {
    std::vector<int32_t> ids;
    for (const auto& t : r.tokens) ids.push_back(t.id);
    return ids;
  };
  auto a = submit(ref["prompts"][0]);
  auto b = submit(ref["prompts"][1]);
  EXPECT_EQ(ids_of(a.get()), ref["prompts"][0]["generate_ids"].get<std::vector<int32_t>>());
  EXPECT_EQ(ids_of(b.get()), ref["prompts"][1]["generate_ids"].get<std::vector<int32_t>>());
  EXPECT_EQ(ids_of(submit(ref["prompts"][0]).get()),
            ref["prompts"][0]["generate_ids"].get<std::vector<int32_t>>());
}

// Positions for a model with 1-D RoPE, or of the wrong count, are refused before any state
// changes.
TEST(Qwen2VLModel, BadPositionsAreRefused) {
  models::LoadOptions options;
  options.num_threads = 2;
  auto model = models::load(model_dir("qwen2_vl"), options);
  const std::vector<int32_t> ids = {5, 6, 7};
  const std::vector<int32_t> short_positions = {0, 1, 2, 0, 1, 2};
  EXPECT_THROW(model->forward_embeds(ids, false, {{}, {}, short_positions}), Error);
  const std::vector<int32_t> negative = {0, 1, -2, 0, 1, 2, 0, 1, 2};
  EXPECT_THROW(model->forward_embeds(ids, false, {{}, {}, negative}), Error);
  EXPECT_EQ(model->n_past(), 0);
  // Text alone (equal components) is plain RoPE: positions given or not, the same logits.
  const std::vector<int32_t> same = {0, 1, 2, 0, 1, 2, 0, 1, 2};
  const std::vector<float> a = model->forward_embeds(ids, true, {{}, {}, same});
  model->truncate(0);
  const std::vector<float> b = model->forward(ids, true);
  EXPECT_EQ(a, b);
  EXPECT_THROW(models::qwen2_vl_rope_index(std::vector<int32_t>{292, 292, 292}, 292, 293,
                                           std::vector<int64_t>{1, 2, 2}, {}, 2),
               Error);
}

}  // namespace
}  // namespace af
