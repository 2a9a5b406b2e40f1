// MiniCPM-V 2.6 against OpenBMB's modeling files run through transformers on a tiny random model
// (tools/make_minicpmv_fixtures.py model): the resampler's rows per image (navit SigLIP with
// bucketed positions over the overview and slices of different sizes, then the perceiver
// resampler), the logits of every position of prompts with one sliced image and with two images
// (one sliced, one a single upscaled piece), ids as MiniCPMVProcessor expands them (and as
// minicpmv_prompt_ids does), greedy ids as llm.generate, the CLI contracts and bad folders.
#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <functional>
#include <sstream>

#include <nlohmann/json.hpp>

#include "af/core/error.hpp"
#include "af/modalities/image.hpp"
#include "af/models/causal_lm.hpp"
#include "af/models/minicpmv.hpp"
#include "af/models/multimodal.hpp"
#include "af/runtime/prompt.hpp"
#include "af/runtime/session.hpp"
#include "af/tokenizer/tokenizer.hpp"
#include "test_util.hpp"

namespace af {
namespace {

std::string dir() { return test::fixtures_dir() + "/models/minicpmv"; }

nlohmann::json reference() {
  return nlohmann::json::parse(test::read_text(dir() + "/reference.json"));
}

std::string image_path(const nlohmann::json& e) {
  const std::string file = e["file"];
  return file.rfind("tests/", 0) == 0 ? test::source_dir() + "/" + file
                                      : test::testdata_dir() + "/" + file;
}

std::unique_ptr<models::MultimodalLM> load_model() {
  models::LoadOptions options;
  options.num_threads = 2;
  auto model = models::load(dir(), options);
  auto* mm = dynamic_cast<models::MultimodalLM*>(model.get());
  if (!mm) return nullptr;
  model.release();
  return std::unique_ptr<models::MultimodalLM>(mm);
}

TEST(MiniCPMV, FeaturesEqualOpenBMB) {
  AF_REQUIRE_TESTDATA(test::testdata_dir() + "/images");
  const nlohmann::json ref = reference();
  auto model = load_model();
  ASSERT_NE(model, nullptr);
  models::ImageEncoder& encoder = model->image_encoder();
  for (const auto& [key, e] : ref["images"].items()) {
    SCOPED_TRACE(key);
    const modalities::Image image = modalities::Image::load(image_path(e));
    const std::vector<float> want = test::read_f32(dir() + "/features_" + key + ".f32");
    EXPECT_EQ(encoder.num_image_tokens(image), e["rows"].get<int64_t>());
    const models::ImageFeatures f = encoder.encode(image);
    ASSERT_EQ(f.n_tokens, e["rows"].get<int64_t>());
    ASSERT_EQ(f.rows.size(), want.size());
    float worst = 0;
    for (size_t i = 0; i < want.size(); ++i)
      worst = std::max(worst, std::fabs(f.rows[i] - want[i]));
    EXPECT_LE(worst, 1e-4f);
  }
}

TEST(MiniCPMV, LogitsEqualOpenBMB) {
  AF_REQUIRE_TESTDATA(test::testdata_dir() + "/images");
  const nlohmann::json ref = reference();
  auto model = load_model();
  ASSERT_NE(model, nullptr);
  const int64_t vocab = model->config().vocab_size;
  for (const auto& [key, p] : ref["prompts"].items()) {
    SCOPED_TRACE(key);
    const std::vector<int32_t> ids = p["ids"].get<std::vector<int32_t>>();
    std::vector<int64_t> counts;
    std::vector<float> rows;
    for (const std::string name : p["images"]) {
      const modalities::Image image = modalities::Image::load(image_path(ref["images"][name]));
      const models::ImageFeatures f = model->image_encoder().encode(image);
      counts.push_back(f.n_tokens);
      rows.insert(rows.end(), f.rows.begin(), f.rows.end());
    }
    const runtime::ImagePrompt placed =
        runtime::expand_image_tokens(ids, model->image_token_id(), counts);
    ASSERT_EQ(placed.ids, ids);  // already expanded: used as is
    model->truncate(0);
    const std::vector<float> logits = model->forward_embeds(ids, true, {placed.mask, rows});
    const std::vector<float> want = test::read_f32(dir() + "/logits_" + key + ".f32");
    ASSERT_EQ(logits.size(), want.size());
    const test::LogitDiff d = test::compare_logits(logits, want, vocab);
    EXPECT_LE(d.max_abs, 1e-4) << "range " << d.ref_range;
    EXPECT_EQ(d.top1_agree, d.rows);
  }
}

std::vector<float> parse_floats(const std::string& text) {
  std::istringstream in(text);
  std::vector<float> out;
  float v;
  while (in >> v) out.push_back(v);
  return out;
}

// The CLI contracts: af-cli image-features prints the resampler's rows, af-cli logits --image
// the logits of the already expanded ids.
TEST(MiniCPMV, CliImageFeaturesAndLogitsEqualOpenBMB) {
  AF_REQUIRE_TESTDATA(test::testdata_dir() + "/images");
  const nlohmann::json ref = reference();
  const std::string image = image_path(ref["images"]["chelsea"]);
  const std::string cli = std::string(AF_CLI_PATH) + " ";
  test::ShellResult r =
      test::run_shell(cli + "image-features -t 2 -m '" + dir() + "' --image '" + image + "'");
  ASSERT_EQ(r.status, 0) << r.out;
  const std::vector<float> rows = parse_floats(r.out);
  const std::vector<float> want = test::read_f32(dir() + "/features_chelsea.f32");
  ASSERT_EQ(rows.size(), want.size());
  for (size_t i = 0; i < want.size(); ++i) ASSERT_NEAR(rows[i], want[i], 1e-4) << i;

  std::string ids;
  for (int32_t id : ref["prompts"]["one_image"]["ids"]) ids += std::to_string(id) + " ";
  r = test::run_shell(cli + "logits -t 2 -m '" + dir() + "' --image '" + image + "' --ids '" + ids +
                      "'");
  ASSERT_EQ(r.status, 0) << r.out;
  const std::vector<float> logits = parse_floats(r.out);
  const std::vector<float> want_logits = test::read_f32(dir() + "/logits_one_image.f32");
  ASSERT_EQ(logits.size(), want_logits.size());
  const test::LogitDiff d = test::compare_logits(logits, want_logits, 518);
  EXPECT_LE(d.max_abs, 1e-4);
  EXPECT_EQ(d.top1_agree, d.rows);
}

int32_t argmax(const float* row, int64_t vocab) {
  return int32_t(std::max_element(row, row + vocab) - row);
}

// Decoding after the image prompt continues as llm.generate does (greedy, 8 tokens).
TEST(MiniCPMV, GreedyIdsEqualGenerate) {
  AF_REQUIRE_TESTDATA(test::testdata_dir() + "/images");
  const nlohmann::json ref = reference();
  auto model = load_model();
  ASSERT_NE(model, nullptr);
  const int64_t vocab = model->config().vocab_size;
  for (const auto& [key, p] : ref["prompts"].items()) {
    SCOPED_TRACE(key);
    const std::vector<int32_t> ids = p["ids"].get<std::vector<int32_t>>();
    std::vector<int64_t> counts;
    std::vector<float> rows;
    for (const std::string name : p["images"]) {
      const models::ImageFeatures f =
          model->image_encoder().encode(modalities::Image::load(image_path(ref["images"][name])));
      counts.push_back(f.n_tokens);
      rows.insert(rows.end(), f.rows.begin(), f.rows.end());
    }
    const runtime::ImagePrompt placed =
        runtime::expand_image_tokens(ids, model->image_token_id(), counts);
    model->truncate(0);
    std::vector<float> logits = model->forward_embeds(ids, false, {placed.mask, rows});
    std::vector<int32_t> greedy;
    for (size_t i = 0; i < p["greedy"].size(); ++i) {
      greedy.push_back(argmax(logits.data() + logits.size() - size_t(vocab), vocab));
      logits = model->forward(std::span<const int32_t>(&greedy.back(), 1), false);
    }
    EXPECT_EQ(greedy, p["greedy"].get<std::vector<int32_t>>());
  }
}

// MiniCPMVProcessor's expansion of "(<image>./</image>)" tags, tokenized: the fixture's ids.
TEST(MiniCPMV, PromptIdsEqualProcessor) {
  AF_REQUIRE_TESTDATA(test::testdata_dir() + "/images");
  const nlohmann::json ref = reference();
  const auto tokenizer = tok::Tokenizer::load(dir());
  const modalities::MiniCPMVConfig config = modalities::parse_minicpmv_config(
      test::read_text(dir() + "/preprocessor_config.json"), "preprocessor_config.json");
  for (const auto& [key, p] : ref["prompts"].items()) {
    SCOPED_TRACE(key);
    std::vector<modalities::Image> images;
    for (const std::string name : p["images"])
      images.push_back(modalities::Image::load(image_path(ref["images"][name])));
    EXPECT_EQ(models::minicpmv_prompt_ids(*tokenizer, config, p["text"].get<std::string>(), images),
              p["ids"].get<std::vector<int32_t>>());
    images.pop_back();  // one tag without an image
    EXPECT_THROW(
        models::minicpmv_prompt_ids(*tokenizer, config, p["text"].get<std::string>(), images),
        Error);
  }
}

// A prompt whose placeholder rows do not match its images is refused with a clear error.
TEST(MiniCPMV, PlaceholderMismatchIsAClearError) {
  const nlohmann::json ref = reference();
  auto model = load_model();
  ASSERT_NE(model, nullptr);
  std::vector<int32_t> ids = ref["prompts"]["one_image"]["ids"].get<std::vector<int32_t>>();
  ids.push_back(model->image_token_id());  // one row too many for the image
  const int64_t counts[] = {ref["images"]["chelsea"]["rows"].get<int64_t>()};
  EXPECT_THROW(runtime::expand_image_tokens(ids, model->image_token_id(), counts), Error);
}

std::vector<modalities::Image> prompt_images(const nlohmann::json& ref, const nlohmann::json& p) {
  std::vector<modalities::Image> images;
  for (const std::string name : p["images"])
    images.push_back(modalities::Image::load(image_path(ref["images"][name])));
  return images;
}

std::string replace_all(std::string text, const std::string& from, const std::string& to) {
  for (size_t at = text.find(from); at != std::string::npos; at = text.find(from, at + to.size()))
    text.replace(at, from.size(), to);
  return text;
}

// The short form other vision models take (the image token once per image, or the processor's
// tag in a text prompt) expands through MultimodalLM's hooks to the processor's ids exactly.
TEST(MiniCPMV, ShortFormExpandsAsProcessor) {
  AF_REQUIRE_TESTDATA(test::testdata_dir() + "/images");
  const nlohmann::json ref = reference();
  auto model = load_model();
  ASSERT_NE(model, nullptr);
  const auto tokenizer = tok::Tokenizer::load(dir());
  const modalities::MiniCPMVConfig config = modalities::parse_minicpmv_config(
      test::read_text(dir() + "/preprocessor_config.json"), "preprocessor_config.json");
  for (const auto& [key, p] : ref["prompts"].items()) {
    SCOPED_TRACE(key);
    const std::vector<modalities::Image> images = prompt_images(ref, p);
    const std::string text = p["text"];
    const std::vector<int32_t> want = p["ids"].get<std::vector<int32_t>>();
    ASSERT_EQ(models::minicpmv_prompt_ids(*tokenizer, config, text, images), want);
    // The tag in a text prompt, and "<unk>" written in its place.
    for (const std::string& form :
         {model->image_prompt_text(text), replace_all(text, "(<image>./</image>)", "<unk>")}) {
      const std::vector<int32_t> ids = tokenizer->encode(form, true);
      EXPECT_EQ(std::count(ids.begin(), ids.end(), model->image_token_id()),
                int64_t(images.size()));
      EXPECT_EQ(model->expand_image_placeholders(ids, images), want);
    }
    EXPECT_EQ(model->expand_image_placeholders(want, images), want);  // already expanded
  }
}

std::string expand_error(const models::MultimodalLM& model, const std::vector<int32_t>& ids,
                         const std::vector<modalities::Image>& images) {
  try {
    model.expand_image_placeholders(ids, images);
  } catch (const Error& e) {
    return e.what();
  }
  return "no error";
}

// Prompts that cannot be expanded exactly are refused with an error naming the tag, never run
// as a bare run of "<unk>" rows.
TEST(MiniCPMV, UnexpandablePromptIsAClearError) {
  AF_REQUIRE_TESTDATA(test::testdata_dir() + "/images");
  const nlohmann::json ref = reference();
  auto model = load_model();
  ASSERT_NE(model, nullptr);
  const auto tokenizer = tok::Tokenizer::load(dir());
  const nlohmann::json& p = ref["prompts"]["one_image"];
  const std::vector<modalities::Image> images = prompt_images(ref, p);
  const int32_t unk = model->image_token_id();
  const int64_t rows = ref["images"]["chelsea"]["rows"];
  std::vector<int32_t> bare = tokenizer->encode("What is it?", true);
  const std::vector<std::vector<int32_t>> bad = {
      bare,                                                   // no placeholder
      tokenizer->encode(p["text"].get<std::string>(), true),  // the tag tokenized as text
      tokenizer->encode("<unk><unk> What is it?", true),      // two for one image
  };
  for (const std::vector<int32_t>& ids : bad) {
    const std::string e = expand_error(*model, ids, images);
    EXPECT_NE(e.find("(<image>./</image>)"), std::string::npos) << e;
  }
  bare.insert(bare.begin() + 1, size_t(rows), unk);  // every row, but without the markup
  EXPECT_NE(expand_error(*model, bare, images).find("markup"), std::string::npos);
  // The session refuses it too, instead of placing the image after BOS.
  Session session = SessionBuilder().build(models::load(dir()));
  GenerateRequest request;
  request.prompt = "What is it?";
  request.images = images;
  request.max_tokens = 1;
  EXPECT_THROW(session.generate(request), Error);
}

// Chat with an image part: the image is written into the message text as MiniCPM-V's chat()
// writes its tag (parts joined by "\n"), and the prompt is the processor's expansion of it: the
// fixture's ids and greedy continuation.
TEST(MiniCPMV, ChatImagePartExpandsAsProcessor) {
  AF_REQUIRE_TESTDATA(test::testdata_dir() + "/images");
  const nlohmann::json ref = reference();
  const nlohmann::json& p = ref["prompts"]["one_image"];  // "(<image>./</image>)\nWhat is it?"
  Session session = SessionBuilder()
                        .chat_template(
                            "{{ bos_token }}{% for m in messages %}{{ m['content'] }}"
                            "{% endfor %}")
                        .build(models::load(dir()));
  GenerateRequest request;
  request.max_tokens = 8;
  const std::vector<ChatMessage> messages = {{"user", "What is it?", prompt_images(ref, p)}};
  const GenerateResponse res = session.chat_completion(messages, request);
  const std::vector<int32_t> want = p["ids"].get<std::vector<int32_t>>();
  ASSERT_GE(session.cached_ids().size(), want.size());
  EXPECT_EQ(std::vector<int32_t>(session.cached_ids().begin(),
                                 session.cached_ids().begin() + std::ptrdiff_t(want.size())),
            want);
  EXPECT_EQ(res.prompt_tokens, int64_t(want.size()));
  EXPECT_EQ(res.ids, p["greedy"].get<std::vector<int32_t>>());
  // "<unk>" typed in the text could not be told from an image: refused, not a second image.
  const std::vector<ChatMessage> typed = {{"user", "<unk> What is it?", prompt_images(ref, p)}};
  EXPECT_THROW(session.chat_completion(typed, request), Error);
}

// af-cli run -n 8 --seed 1 --temp 0 --print-ids on the fixture: the exit status, and stdout (the
// ids), or stderr with `errors`.
test::ShellResult cli_run(const std::string& args, bool errors = false) {
  test::ShellResult r = test::run_shell(std::string(AF_CLI_PATH) + " run -t 2 -m '" + dir() +
                                        "' -n 8 --seed 1 --temp 0 --print-ids " + args +
                                        (errors ? " 2>&1 >/dev/null" : " 2>/dev/null"));
  while (!r.out.empty() && r.out.back() == '\n') r.out.pop_back();
  return r;
}

// af-cli run with an image prompt generates llm.generate's greedy ids: the processor's tag (one
// image, two images); a prompt without a placeholder is refused.
TEST(MiniCPMV, CliRunGreedyIdsEqualGenerate) {
  AF_REQUIRE_TESTDATA(test::testdata_dir() + "/images");
  const nlohmann::json ref = reference();
  const auto images = [&](const char* key) {
    std::string out;
    for (const std::string name : ref["prompts"][key]["images"])
      out += " --image '" + image_path(ref["images"][name]) + "'";
    return out;
  };
  const auto greedy = [&](const char* key) {
    std::string out;
    for (int32_t id : ref["prompts"][key]["greedy"]) {
      if (!out.empty()) out += ' ';
      out += std::to_string(id);
    }
    return out;
  };
  // -p unescapes "\n" as llama-cli does.
  test::ShellResult r = cli_run(images("one_image") + " -p '(<image>./</image>)\\nWhat is it?'");
  EXPECT_EQ(r.status, 0);
  EXPECT_EQ(r.out, greedy("one_image"));
  r = cli_run(images("two_images") + " -p 'A (<image>./</image>) B (<image>./</image>)'");
  EXPECT_EQ(r.status, 0);
  EXPECT_EQ(r.out, greedy("two_images"));
  r = cli_run(images("one_image") + " -p 'What is it?'", /*errors=*/true);
  EXPECT_NE(r.status, 0);
  EXPECT_NE(r.out.find("(<image>./</image>)"), std::string::npos) << r.out;
}

// The fixture folder copied with one file changed by `edit` (or removed when it returns false).
std::string load_error(const std::string& file, const std::function<bool(nlohmann::json&)>& edit) {
  test::TempFolder tmp("af_minicpmv");
  for (const char* name : {"config.json", "model.safetensors", "tokenizer.json",
                           "tokenizer_config.json", "preprocessor_config.json"}) {
    std::filesystem::copy_file(dir() + "/" + name, tmp / name);
  }
  nlohmann::json j = nlohmann::json::parse(test::read_text((tmp / file).string()));
  if (edit(j)) {
    std::ofstream((tmp / file).string()) << j.dump();
  } else {
    std::filesystem::remove(tmp / file);
  }
  try {
    models::load((tmp / "").string());
  } catch (const Error& e) {
    return e.what();
  }
  return "no error";
}

TEST(MiniCPMV, BadFolderIsAClearError) {
  EXPECT_NE(load_error("preprocessor_config.json", [](nlohmann::json&) { return false; })
                .find("preprocessor_config.json"),
            std::string::npos);
  const std::string size = load_error("preprocessor_config.json", [](nlohmann::json& j) {
    j["image_feature_size"] = 16;
    return true;
  });
  EXPECT_NE(size.find("image_feature_size"), std::string::npos) << size;
  const std::string vision = load_error("config.json", [](nlohmann::json& j) {
    j.erase("vision_config");
    return true;
  });
  EXPECT_NE(vision.find("vision_config"), std::string::npos) << vision;
  const std::string hidden = load_error("config.json", [](nlohmann::json& j) {
    j["query_num"] = 0;
    return true;
  });
  EXPECT_NE(hidden.find("query_num"), std::string::npos) << hidden;
}

}  // namespace
}  // namespace af
