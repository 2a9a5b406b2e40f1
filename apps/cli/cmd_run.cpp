// af-cli run -m PATH [-p PROMPT | -f FILE | < FILE] [-n N|-1] [--temp T] [--top-k K] [--top-p P]
//            [--min-p P] [--seed S] [--repeat-penalty R] [--stop TEXT]... [--threads N]
//            [--print-ids] [--extend-context] [--mmproj FILE] [--image IMG ...] [--audio FILE ...]
//            [--json-schema FILE | --json] ...
// Prints only the generated text on stdout (streamed; with --print-ids the generated ids
// separated by spaces), timings on stderr. --temp 0 is greedy. Without a prompt, generation
// starts from the BOS token alone. Images (multimodal models) go where the prompt has the model's
// image token, else right after BOS. Audio (audio-language models such as Qwen2-Audio) goes where
// the prompt has "<|AUDIO|>"; a prompt without it gets "<|audio_bos|><|AUDIO|><|audio_eos|>" per
// audio in front, the form of Qwen2-Audio's model card and chat template. --video FILE [--fps F]
// [--max-frames N] (Qwen2-VL, Qwen2.5-VL): the video goes where the prompt has "<|video_pad|>",
// else "<|vision_start|><|video_pad|><|vision_end|>" in front. --json-schema
// constrains the output to a JSON document valid under the schema in FILE
// (af/runtime/json_schema.hpp lists what is supported), --json to any JSON object; either ends
// generation when the document is whole.
#include <cstdio>
#include <fstream>
#include <memory>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "af/core/error.hpp"
#include "af/modalities/audio.hpp"
#include "af/modalities/image.hpp"
#include "af/models/causal_lm.hpp"
#include "af/runtime/json_schema.hpp"
#include "af/runtime/session.hpp"
#include "cli_common.hpp"
#include "cli_video.hpp"
#include "commands.hpp"
#include "model_options.hpp"
#include "sampling_options.hpp"

namespace af::cli {
namespace {

// Qwen2AudioProcessor's placeholder and the markers its chat template writes around it.
constexpr char kAudioToken[] = "<|AUDIO|>";
constexpr char kAudioSpan[] = "<|audio_bos|><|AUDIO|><|audio_eos|>";

// The prompt with one audio span per audio in front when it holds no audio placeholder.
std::string audio_prompt(const std::string& prompt, size_t n_audio) {
  if (n_audio == 0 || prompt.find(kAudioToken) != std::string::npos) return prompt;
  std::string out;
  for (size_t i = 0; i < n_audio; ++i) out += kAudioSpan;
  return out + prompt;
}

std::shared_ptr<const runtime::JsonGrammar> load_json_schema(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  AF_CHECK(in, ErrorCode::kIo, "cli", "--json-schema: cannot open ", path);
  std::ostringstream text;
  text << in.rdbuf();
  try {
    return runtime::compile_json_schema_text(text.str());
  } catch (const Error& e) {
    fail(e.code(), "cli", "--json-schema ", path, ": ", e.what());
  }
}

}  // namespace

Command add_run(CLI::App& app) {
  struct Options {
    PromptOptions prompt;
    int n_predict = 128;
    std::vector<std::string> images;
    std::vector<std::string> audios;
    VideoFlags video;
    std::vector<std::string> stop;
    bool print_ids = false, ignore_eos = false, json = false;
    std::string json_schema;
    SamplingOptions sampling;
    ModelOptions model;
  };
  auto o = std::make_shared<Options>();
  auto* sub = app.add_subcommand("run", "Generate text from a prompt");
  add_prompt_options(*sub, o->prompt);
  sub->add_option("--image", o->images, "image file (repeatable; multimodal models)");
  sub->add_option("--audio", o->audios,
                  "audio file: WAV, FLAC, OGG, MP3 (repeatable; audio-language models)");
  add_video_flags(*sub, o->video);
  sub->add_option("-n,--n-predict", o->n_predict,
                  "tokens to generate (-1: until end of sequence or the context's end)");
  add_sampling_options(*sub, o->sampling);
  add_stop_option(*sub, o->stop);
  sub->add_flag("--ignore-eos", o->ignore_eos, "keep generating after end-of-sequence tokens");
  add_model_options(*sub, o->model, "context length (0: the model's trained context)",
                    /*extend=*/true);
  sub->add_flag("--print-ids", o->print_ids, "print generated ids instead of text");
  auto* schema_opt =
      sub->add_option("--json-schema", o->json_schema,
                      "constrain the output to JSON valid under this JSON Schema file");
  sub->add_flag("--json", o->json, "constrain the output to one JSON object")->excludes(schema_opt);
  return [o]() {
    // Every flag is checked before anything is loaded.
    require_flag(
        o->n_predict >= 1 || o->n_predict == -1, "-n/--n-predict",
        "must be >= 1, or -1 (until the context's end), got " + std::to_string(o->n_predict));
    check_sampling_options(o->sampling);
    check_model_options(o->model);
    note_gpu_flags(o->model.gpu, "run");
    require_flag(o->video.path.empty() || (o->images.empty() && o->audios.empty()), "--video",
                 "takes no --image or --audio beside it: a prompt takes one kind of media");
    const std::string prompt =
        video_prompt(audio_prompt(read_prompt(o->prompt), o->audios.size()), o->video);
    const std::vector<std::string> stop = process_stop_strings(o->stop, o->prompt.escape);
    std::shared_ptr<const runtime::JsonGrammar> grammar;
    if (o->json) grammar = runtime::json_object_grammar();
    if (!o->json_schema.empty()) grammar = load_json_schema(o->json_schema);

    std::shared_ptr<const tok::Tokenizer> tokenizer = tok::Tokenizer::load(o->model.path);
    GenerateRequest request;
    request.stop = stop;
    request.ignore_eos = o->ignore_eos;
    request.sampling = make_sampling_params(o->sampling);
    request.on_prefill = prefill_progress();
    request.json_schema = grammar;
    request.prompt_ids = tokenizer->encode(prompt, /*add_special=*/true);
    for (const std::string& image : o->images)
      request.images.push_back(modalities::Image::load(image));
    for (const std::string& audio : o->audios)
      request.audios.push_back(modalities::Audio::load(audio));
    AF_CHECK(!request.prompt_ids.empty(), ErrorCode::kInvalidArgument, "cli",
             "the prompt is empty and the tokenizer adds no BOS token: nothing to start from");
    const auto n_prompt = static_cast<int64_t>(request.prompt_ids.size());
    const int64_t context =
        plan_context(o->model, trained_context(o->model.path), n_prompt, o->n_predict, "run");
    // -n -1: as many as the context holds after the prompt.
    request.max_tokens =
        o->n_predict > 0 ? o->n_predict
                         : static_cast<int32_t>(std::min<int64_t>(context - n_prompt, INT32_MAX));
    auto model = load_with_progress(o->model.path, make_load_options(o->model, context), "run");
    if (!o->video.path.empty()) request.videos.push_back(load_video(*model, o->video));
    Session session = SessionBuilder().tokenizer(tokenizer).build(std::move(model));
    if (!request.images.empty() && !prompt.empty()) {
      // As text, so that the session turns the model's image tags (MiniCPM-V's
      // "(<image>./</image>)", whose rows need markup; no placeholder is an error there) into
      // its image token before tokenizing.
      request.prompt = prompt;
      request.prompt_ids.clear();
    }

    bool first_id = true;
    if (!o->print_ids) {
      request.on_token = [](const TokenEvent& event) {
        std::fwrite(event.text.data(), 1, event.text.size(), stdout);
        std::fflush(stdout);
        return true;
      };
    }
    const GenerateResponse res = session.generate(request);
    if (o->print_ids) {
      std::vector<int32_t> ids = res.ids;
      // The end-of-sequence token is not part of the output, as in the text.
      if (res.finish_reason == FinishReason::kStop && res.stop_string.empty() && !ids.empty())
        ids.pop_back();
      for (int32_t id : ids) {
        std::printf(first_id ? "%d" : " %d", id);
        first_id = false;
      }
    }
    std::fputs("\n", stdout);
    std::fprintf(stderr,
                 "\n[af-cli run] stop: %s | prompt %lld tokens, %.1f tok/s | generated %zu "
                 "tokens, %.1f tok/s | first token %.0f ms | seed %llu\n",
                 std::string(to_string(res.finish_reason)).c_str(),
                 static_cast<long long>(res.prompt_tokens), res.timings.prompt_tokens_per_s,
                 res.ids.size(), res.timings.generated_tokens_per_s,
                 res.timings.time_to_first_token_ms,
                 static_cast<unsigned long long>(request.sampling.seed));
    return 0;
  };
}

}  // namespace af::cli
