// Qwen2-VL and Qwen2.5-VL reading a video, against transformers on the tiny random models
// (tools/make_qwen2_vl_fixtures.py video): the clip the ffmpeg CLI makes from the test images
// (tools/make_video_fixtures.py's), sampled as fetch_video samples it, through the model's video
// processor and vision tower; the placeholder expanded as Qwen2VLProcessor expands it, M-RoPE
// positions as get_rope_index (Qwen2.5-VL's time steps from second_per_grid_ts), the logits of
// every position through af-cli logits --video, and greedy ids equal to generate (library,
// Session with prefix reuse, af-cli run --video).
#include <cmath>
#include <filesystem>
#include <fstream>
#include <sstream>

#include <nlohmann/json.hpp>

#include "af/modalities/video.hpp"
#include "af/models/causal_lm.hpp"
#include "af/models/multimodal.hpp"
#include "af/models/qwen2_vl.hpp"
#include "af/runtime/session.hpp"
#include "test_util.hpp"
#include "unit/video_test_util.hpp"

namespace af {
namespace {

constexpr int32_t kVideoPad = 293;

std::string model_dir(const std::string& m) { return test::fixtures_dir() + "/models/" + m; }

nlohmann::json video_reference(const std::string& model) {
  return nlohmann::json::parse(test::read_text(model_dir(model) + "/reference.json"))["video"];
}

std::string ids_text(const std::vector<int32_t>& ids) {
  std::string text;
  for (int32_t id : ids) text += std::to_string(id) + " ";
  return text;
}

std::string logits_command(const std::string& model, const std::string& ids,
                           const std::string& flags) {
  return std::string(AF_CLI_PATH) + " logits -t 2 -m '" + model_dir(model) + "' --ids '" + ids +
         "' " + flags;
}

int32_t argmax(const float* row, int64_t n) {
  return int32_t(std::max_element(row, row + n) - row);
}

// af-cli logits --video with the placeholder given once (or already expanded): one line per
// position of the expanded prompt, within 1e-4 of transformers, same argmax everywhere.
void check_cli_logits(const std::string& model, bool expanded) {
  SCOPED_TRACE(model);
  const nlohmann::json ref = video_reference(model);
  const std::string ids =
      ids_text(ref[expanded ? "input_ids" : "prompt_ids"].get<std::vector<int32_t>>());
  const std::string flags =
      "--video '" + test::fixture_clip() + "' --fps " + std::to_string(ref["fps"].get<double>());
  const test::ShellResult r = test::run_shell(logits_command(model, ids, flags));
  ASSERT_EQ(r.status, 0);
  std::vector<float> got;
  size_t lines = 0;
  std::istringstream in(r.out);
  for (std::string line; std::getline(in, line); ++lines) {
    std::istringstream row(line);
    for (std::string tok; row >> tok;) got.push_back(std::strtof(tok.c_str(), nullptr));
  }
  const std::vector<float> want =
      test::read_f32(model_dir(model) + "/" + ref["logits_file"].get<std::string>());
  EXPECT_EQ(lines, ref["input_ids"].size());
  ASSERT_EQ(got.size(), want.size());
  float worst = 0;
  for (size_t i = 0; i < got.size(); ++i) worst = std::max(worst, std::fabs(got[i] - want[i]));
  EXPECT_LE(worst, 1e-4f);
  const int64_t vocab = int64_t(want.size() / lines);
  for (size_t t = 0; t < lines; ++t)
    EXPECT_EQ(argmax(&got[t * vocab], vocab), argmax(&want[t * vocab], vocab)) << t;
}

TEST(Qwen2VLVideo, CliLogitsMatchTransformers) {
  AF_SKIP_WITHOUT_VIDEO();
  check_cli_logits("qwen2_vl", /*expanded=*/true);
}

// af-cli image-features --video: one line per merged token, equal to get_video_features.
TEST(Qwen2VLVideo, CliImageFeaturesPrintsVideoRows) {
  AF_SKIP_WITHOUT_VIDEO();
  const std::string model = "qwen2_5_vl";
  const nlohmann::json ref = video_reference(model);
  const test::ShellResult r =
      test::run_shell(std::string(AF_CLI_PATH) + " image-features -t 2 -m '" + model_dir(model) +
                      "' --video '" + test::fixture_clip() + "' --fps 3");
  ASSERT_EQ(r.status, 0);
  std::vector<float> got;
  size_t lines = 0;
  std::istringstream in(r.out);
  for (std::string line; std::getline(in, line); ++lines) {
    std::istringstream row(line);
    for (std::string tok; row >> tok;) got.push_back(std::strtof(tok.c_str(), nullptr));
  }
  const std::vector<float> want =
      test::read_f32(model_dir(model) + "/" + ref["features_file"].get<std::string>());
  EXPECT_EQ(lines, ref["features_shape"][0].get<size_t>());
  ASSERT_EQ(got.size(), want.size());
  float worst = 0;
  for (size_t i = 0; i < got.size(); ++i) worst = std::max(worst, std::fabs(got[i] - want[i]));
  EXPECT_LE(worst, 1e-4f);
  const test::ShellResult none = test::run_shell(std::string(AF_CLI_PATH) + " image-features -m '" +
                                                 model_dir(model) + "' 2>&1");
  EXPECT_EQ(none.status, 2);
  EXPECT_NE(none.out.find("--image/--video is required"), std::string::npos) << none.out;
}

// fps 3: 12 frames, second_per_grid_t 2/3, time positions 0 1 2 4 5 6 (tokens_per_second 2).
TEST(Qwen2VLVideo, Qwen25CliLogitsWithFpsMatchTransformers) {
  AF_SKIP_WITHOUT_VIDEO();
  check_cli_logits("qwen2_5_vl", /*expanded=*/false);
}

// Through the library: the sampled frames, the grid, the expanded ids' M-RoPE positions and
// greedy decoding after the video (the sequence continuing at n_past + rope delta).
void check_positions_and_generate(const std::string& model_name) {
  SCOPED_TRACE(model_name);
  const nlohmann::json ref = video_reference(model_name);
  models::LoadOptions options;
  options.num_threads = 2;
  auto model = models::load(model_dir(model_name), options);
  auto* mm = dynamic_cast<models::MultimodalLM*>(model.get());
  ASSERT_NE(mm, nullptr);
  EXPECT_EQ(mm->video_token_id(), kVideoPad);
  modalities::VideoSampling sampling = mm->video_sampling();
  sampling.fps = ref["fps"].get<double>();
  const modalities::Video video = modalities::Video::load(test::fixture_clip(), sampling);
  EXPECT_EQ(video.frame_indices(), ref["frame_indices"].get<std::vector<int64_t>>());
  const models::VideoFeatures f = mm->encode_video(video);
  EXPECT_EQ(mm->num_video_tokens(video), f.features.n_tokens);  // the count without encoding
  EXPECT_EQ(f.features.grid_thw, ref["grid_thw"].get<std::vector<int64_t>>());
  EXPECT_DOUBLE_EQ(f.second_per_grid_t, ref["second_per_grid_t"].get<double>());
  const auto ids = ref["input_ids"].get<std::vector<int32_t>>();
  const size_t n = ids.size();
  std::vector<uint8_t> mask;
  for (int32_t id : ids) mask.push_back(id == kVideoPad);
  ASSERT_EQ(f.features.n_tokens, std::count(mask.begin(), mask.end(), 1));
  const std::vector<int32_t> positions = mm->mrope_positions(ids, {}, std::span(&f, 1));
  const auto want_pos = ref["position_ids"].get<std::vector<std::vector<int32_t>>>();
  ASSERT_EQ(positions.size(), 3 * n);
  for (size_t c = 0; c < 3; ++c)
    EXPECT_EQ(std::vector<int32_t>(positions.begin() + c * n, positions.begin() + (c + 1) * n),
              want_pos[c]);
  const int64_t vocab = model->config().vocab_size;
  const std::vector<float> logits =
      model->forward_embeds(ids, true, {mask, f.features.rows, positions});
  const auto want = ref["generate_ids"].get<std::vector<int32_t>>();
  std::vector<int32_t> got{argmax(&logits[(n - 1) * vocab], vocab)};
  while (got.size() < want.size()) {
    const std::vector<float> next = model->forward(std::span(&got.back(), 1), false);
    got.push_back(argmax(next.data(), vocab));
  }
  EXPECT_EQ(got, want);
}

TEST(Qwen2VLVideo, PositionsAndGreedyIdsMatchTransformers) {
  AF_SKIP_WITHOUT_VIDEO();
  check_positions_and_generate("qwen2_vl");
  check_positions_and_generate("qwen2_5_vl");
}

modalities::Video sampled_clip(models::CausalLM& model, double fps) {
  modalities::VideoSampling sampling = dynamic_cast<models::MultimodalLM&>(model).video_sampling();
  sampling.fps = fps;
  return modalities::Video::load(test::fixture_clip(), sampling);
}

// Through a Session (af-cli run): the placeholder given once is expanded, the video's positions
// and rows fill the prefill, and a repeated request reuses the cached prefix (video rows
// included, keyed by the video's hash) for the same ids. Chat turns refuse videos.
TEST(Qwen2VLVideo, SessionGreedyIdsEqualGenerateAndSurvivePrefixReuse) {
  AF_SKIP_WITHOUT_VIDEO();
  for (const std::string model_name : {"qwen2_vl", "qwen2_5_vl"}) {
    SCOPED_TRACE(model_name);
    const nlohmann::json ref = video_reference(model_name);
    models::LoadOptions options;
    options.num_threads = 2;
    auto model = models::load(model_dir(model_name), options);
    GenerateRequest req;
    req.videos.push_back(sampled_clip(*model, ref["fps"].get<double>()));
    modalities::Video other = sampled_clip(*model, 1.0);  // other frames, another hash
    // The fixture has no tokenizer of its own; prompts are ids, so any one decodes them.
    Session session = SessionBuilder()
                          .tokenizer_path(test::testdata_dir() + "/models/stories260K-hf")
                          .build(std::move(model));
    const auto want = ref["generate_ids"].get<std::vector<int32_t>>();
    req.max_tokens = static_cast<int32_t>(want.size());
    req.ignore_eos = true;
    req.prompt_ids = ref["prompt_ids"].get<std::vector<int32_t>>();  // one placeholder
    const GenerateResponse first = session.generate(req);
    EXPECT_EQ(first.ids, want);
    EXPECT_EQ(first.prompt_tokens, int64_t(ref["input_ids"].size()));
    const GenerateResponse again = session.generate(req);
    EXPECT_EQ(again.ids, want);
    EXPECT_EQ(again.cached_tokens, again.prompt_tokens - 1);  // the video's rows reused
    // Another video behind the same ids shares only the ids before it.
    req.videos[0] = std::move(other);
    EXPECT_EQ(session.generate(req).cached_tokens, 3);
    EXPECT_THROW(session.chat("hello", req), Error);
  }
}

// A model folder for af-cli run: the fixture's files beside a WordPiece tokenizer.json whose
// word "w<i>" is id i (every id has text, so none is masked from sampling) and whose special
// tokens are Qwen2-VL's vision markers at the fixture's ids.
std::string model_with_tokenizer(const std::string& model) {
  namespace fs = std::filesystem;
  const fs::path dir = fs::path(test::video_tmp_dir()) / (model + "_tok");
  fs::create_directories(dir);
  for (const char* f :
       {"config.json", "model.safetensors", "preprocessor_config.json", "generation_config.json"}) {
    std::error_code ec;
    fs::remove(dir / f, ec);
    fs::create_symlink(fs::absolute(model_dir(model) + "/" + f), dir / f);
  }
  nlohmann::json vocab = {{"[UNK]", 0}};
  for (int i = 1; i < 300; ++i)
    if (i < 290 || i > 293) vocab["w" + std::to_string(i)] = i;
  nlohmann::json added = nlohmann::json::array();
  const char* specials[] = {"<|vision_start|>", "<|vision_end|>", "<|image_pad|>", "<|video_pad|>"};
  for (int i = 0; i < 4; ++i)
    added.push_back({{"id", 290 + i},
                     {"content", specials[i]},
                     {"single_word", false},
                     {"lstrip", false},
                     {"rstrip", false},
                     {"normalized", false},
                     {"special", true}});
  const nlohmann::json tok = {
      {"version", "1.0"},
      {"added_tokens", added},
      {"pre_tokenizer", {{"type", "BertPreTokenizer"}}},
      {"model", {{"type", "WordPiece"}, {"unk_token", "[UNK]"}, {"vocab", vocab}}}};
  std::ofstream(dir / "tokenizer.json") << tok.dump();
  return dir.string();
}

// Models that take no video refuse GenerateRequest::videos with a clear error (a text-only
// model, LLaVA's image-only encoder), before any state changes.
TEST(Qwen2VLVideo, SessionRefusesVideosForModelsWithoutVideo) {
  if (!std::filesystem::is_directory(test::testdata_dir() + "/models/stories260K-hf"))
    GTEST_SKIP() << "needs AF_TESTDATA/models/stories260K-hf (a tokenizer)";
  const modalities::Image rgb =
      modalities::Image::load(test::fixtures_dir() + "/images/inputs/rgb.bmp");
  for (const std::string model_name : {"qwen2", "llava_clip"}) {
    SCOPED_TRACE(model_name);
    models::LoadOptions options;
    options.num_threads = 2;
    Session session = SessionBuilder()
                          .tokenizer_path(test::testdata_dir() + "/models/stories260K-hf")
                          .build(models::load(model_dir(model_name), options));
    GenerateRequest req;
    req.prompt_ids = {1, 5, 6};
    req.max_tokens = 1;
    req.videos.push_back(modalities::Video::from_frames({rgb, rgb}));
    try {
      session.generate(req);
      ADD_FAILURE() << "a video was accepted";
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find("takes no video"), std::string::npos) << e.what();
    }
  }
}

// transformers 5's processor_config.json alone ("image_processor" + "video_processor" objects)
// serves videos with its own budget; a video processor whose merge_size differs from the tower's
// is refused naming the folder, and the images still work.
TEST(Qwen2VLVideo, VideoProcessorFromProcessorConfigJson) {
  AF_SKIP_WITHOUT_VIDEO();
  namespace fs = std::filesystem;
  const nlohmann::json image =
      nlohmann::json::parse(test::read_text(model_dir("qwen2_vl") + "/preprocessor_config.json"));
  const auto folder = [&](const std::string& name, const nlohmann::json& video) {
    const fs::path dir = fs::path(test::video_tmp_dir()) / name;
    fs::create_directories(dir);
    for (const char* f : {"config.json", "model.safetensors"}) {
      std::error_code ec;
      fs::remove(dir / f, ec);
      fs::create_symlink(fs::absolute(model_dir("qwen2_vl") + "/" + f), dir / f);
    }
    std::ofstream(dir / "processor_config.json")
        << nlohmann::json{{"image_processor", image}, {"video_processor", video}}.dump();
    models::LoadOptions options;
    options.num_threads = 2;
    return models::load(dir.string(), options);
  };
  nlohmann::json video = image;
  video["max_pixels"] = 1024;  // frames of 16x32 pixels (preprocessor_config.json: 32x64)
  auto model = folder("combined", video);
  auto& mm = dynamic_cast<models::MultimodalLM&>(*model);
  const modalities::Video clip = sampled_clip(*model, 2.0);
  const models::VideoFeatures f = mm.encode_video(clip);
  EXPECT_EQ(f.features.grid_thw, (std::vector<int64_t>{4, 2, 4}));
  EXPECT_EQ(mm.num_video_tokens(clip), 8);
  video["merge_size"] = 1;
  auto bad = folder("bad_merge", video);
  auto& bad_mm = dynamic_cast<models::MultimodalLM&>(*bad);
  try {
    bad_mm.video_sampling();
    ADD_FAILURE() << "merge_size 1 accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("merge_size 1 differs"), std::string::npos) << e.what();
  }
  const modalities::Image rgb =
      modalities::Image::load(test::fixtures_dir() + "/images/inputs/rgb.bmp");
  EXPECT_GT(bad_mm.image_encoder().encode(rgb).n_tokens, 0);
}

// af-cli run --video --fps: greedy ids equal transformers' generate; the placeholder comes from
// the text prompt through the tokenizer. Flags that mix media are refused before loading.
TEST(Qwen2VLVideo, CliRunGreedyIdsEqualGenerate) {
  AF_SKIP_WITHOUT_VIDEO();
  const std::string model = "qwen2_5_vl";
  const nlohmann::json ref = video_reference(model);
  const std::string cmd = std::string(AF_CLI_PATH) + " run -t 2 -m '" +
                          model_with_tokenizer(model) + "' --video '" + test::fixture_clip() +
                          "' --fps 3 --temp 0 --ignore-eos --print-ids -n 8";
  const test::ShellResult r = test::run_shell(
      cmd + " -p 'w5 w6<|vision_start|><|video_pad|><|vision_end|>w8 w9 w10' 2>/dev/null");
  ASSERT_EQ(r.status, 0);
  std::vector<int32_t> got;
  std::istringstream in(r.out);
  for (int32_t id; in >> id;) got.push_back(id);
  EXPECT_EQ(got, ref["generate_ids"].get<std::vector<int32_t>>());
  const test::ShellResult mixed = test::run_shell(cmd + " -p w5 --image '" + test::fixtures_dir() +
                                                  "/images/inputs/rgb.bmp' 2>&1");
  EXPECT_EQ(mixed.status, 2);
  EXPECT_NE(mixed.out.find("one kind of media"), std::string::npos) << mixed.out;
  // 48 video tokens do not fit a context of 40: refused before the video is encoded.
  const test::ShellResult small = test::run_shell(cmd + " -c 40 -p w5 2>&1");
  EXPECT_EQ(small.status, 1);
  EXPECT_NE(small.out.find("a video of 12 frames needs 48 tokens; the context holds 40"),
            std::string::npos)
      << small.out;
}

// torch computes Qwen2.5-VL's time step as a float32 product and truncates: for 4 frames of a
// 75-frame 25 fps video (second_per_grid_t 1.4999999999999998) the second temporal patch sits at
// 3, where double arithmetic would give 2 (checked with torch 2.15's get_vision_position_ids).
TEST(Qwen2VLVideo, TimeStepsAreFloat32AsTorch) {
  const double second_per_grid_t = 2.0 / (4.0 / 75.0 * 25.0);
  const float interval = models::qwen2_5_vl_time_interval(2, second_per_grid_t);
  const std::vector<int32_t> ids = {7, kVideoPad, kVideoPad, 8};
  const std::vector<int64_t> grid = {2, 2, 2};
  const std::vector<int32_t> pos =
      models::qwen2_vl_rope_index(ids, 292, kVideoPad, {}, grid, 2, std::span(&interval, 1));
  EXPECT_EQ(std::vector<int32_t>(pos.begin(), pos.begin() + 4), (std::vector<int32_t>{0, 1, 4, 2}));
  // A hostile interval cannot overflow the int32 positions.
  const float huge = 1e30f;
  EXPECT_THROW(models::qwen2_vl_rope_index(ids, 292, kVideoPad, {}, grid, 2, std::span(&huge, 1)),
               Error);
}

// Bad input exits 1 with a message naming the fault, before decoding where it can.
TEST(Qwen2VLVideo, CliRefusesBadVideoInput) {
  AF_SKIP_WITHOUT_VIDEO();
  const std::string clip = "--video '" + test::fixture_clip() + "'";
  const auto run = [](const std::string& model, const std::string& ids, const std::string& flags) {
    return test::run_shell(logits_command(model, ids, flags) + " 2>&1 >/dev/null");
  };
  auto r = run("qwen2", "5 6 7", clip);
  EXPECT_EQ(r.status, 1);
  EXPECT_NE(r.out.find("takes no video"), std::string::npos) << r.out;
  r = run("qwen2_vl", "5 6 7", clip);
  EXPECT_EQ(r.status, 1);
  EXPECT_NE(r.out.find("no video placeholder"), std::string::npos) << r.out;
  r = run("qwen2_vl", "5 293 293 293 6", clip);
  EXPECT_EQ(r.status, 1);
  EXPECT_NE(r.out.find("3 video placeholders"), std::string::npos) << r.out;
  r = run("qwen2_vl", "5 293 6", "--video /nonexistent.mp4");
  EXPECT_EQ(r.status, 1);
  EXPECT_NE(r.out.find("[video] /nonexistent.mp4"), std::string::npos) << r.out;
  r = run("qwen2_vl", "5 293 6", clip + " --fps 0");
  EXPECT_EQ(r.status, 1);
  EXPECT_NE(r.out.find("fps"), std::string::npos) << r.out;
  r = run("qwen2_vl", "5 293 292 6",
          clip + " --image '" + test::fixtures_dir() + "/images/inputs/rgb.bmp'");
  EXPECT_EQ(r.status, 1);
  EXPECT_NE(r.out.find("one kind of media"), std::string::npos) << r.out;
}

}  // namespace
}  // namespace af
