/* The C API from C (compiled as C11): load, tokenize/detokenize, generate with streaming and
 * cancellation, stop strings, chat, logits, and errors as statuses with messages.
 *   af_c_api_test STORIES260K_GGUF */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "af/c/alloyforge.h"

static int passed = 0, failed = 0;

#define CHECK(cond)                                                                           \
  do {                                                                                        \
    if (cond) {                                                                               \
      ++passed;                                                                               \
    } else {                                                                                  \
      ++failed;                                                                               \
      fprintf(stderr, "%s:%d: CHECK(%s) failed; last error: %s\n", __FILE__, __LINE__, #cond, \
              af_last_error());                                                               \
    }                                                                                         \
  } while (0)

/* Collects the streamed text; stops after `stop_after` tokens when that is > 0. */
typedef struct stream_state {
  char text[4096];
  size_t len;
  int tokens;
  int stop_after;
} stream_state;

static bool on_token(const char* text, size_t text_len, int32_t id, void* user_data) {
  stream_state* s = (stream_state*)user_data;
  (void)id;
  if (s->len + text_len < sizeof(s->text)) {
    memcpy(s->text + s->len, text, text_len);
    s->len += text_len;
    s->text[s->len] = '\0';
  }
  ++s->tokens;
  return s->stop_after <= 0 || s->tokens < s->stop_after;
}

static void test_errors(void) {
  af_model* model = (af_model*)1;
  af_status status = af_model_load("/nonexistent/model.gguf", NULL, &model);
  CHECK(status == AF_ERR_IO || status == AF_ERR_INVALID_ARGUMENT || status == AF_ERR_FORMAT);
  CHECK(model == NULL);
  CHECK(strstr(af_last_error(), "/nonexistent/model.gguf") != NULL);
  CHECK(af_model_load(NULL, NULL, &model) == AF_ERR_INVALID_ARGUMENT);
  CHECK(strcmp(af_status_name(AF_ERR_OUT_OF_RANGE), "out_of_range") == 0);
  af_model_free(NULL);
  af_result_free(NULL);
}

static void test_tokenizer(af_model* model) {
  const char* text = "Once upon a time";
  size_t n = 0;
  CHECK(af_tokenize(model, text, strlen(text), true, false, NULL, 0, &n) ==
        AF_ERR_BUFFER_TOO_SMALL);
  CHECK(n > 1);
  int32_t ids[64];
  CHECK(af_tokenize(model, text, strlen(text), true, false, ids, 64, &n) == AF_OK);
  CHECK(ids[0] == 1); /* BOS */
  char back[128];
  size_t len = 0;
  CHECK(af_detokenize(model, ids, n, true, back, sizeof back, &len) == AF_OK);
  CHECK(strcmp(back, text) == 0);
  CHECK(len == strlen(text));
  CHECK(af_detokenize(model, ids, n, true, back, 4, &len) == AF_ERR_BUFFER_TOO_SMALL);
  const int32_t bad = 1000000;
  CHECK(af_detokenize(model, &bad, 1, true, back, sizeof back, &len) == AF_ERR_INVALID_ARGUMENT);
}

static void test_generate(af_model* model) {
  af_generate_params params;
  af_generate_params_init(&params);
  params.max_tokens = 48;
  stream_state stream = {0};
  af_result* result = NULL;
  CHECK(af_generate(model, "Once upon a time", &params, on_token, &stream, &result) == AF_OK);
  /* The greedy continuation of testdata's expected_once_upon_a_time.txt. */
  const char* text = af_result_text(result, NULL);
  CHECK(strncmp(text, ", there was a little girl named Lily", 36) == 0);
  CHECK(strcmp(stream.text, text) == 0);
  size_t n_tokens = 0;
  af_result_tokens(result, &n_tokens);
  CHECK(n_tokens == 48);
  CHECK(strcmp(af_result_finish_reason(result), "length") == 0);
  af_timings timings = af_result_timings(result);
  CHECK(timings.prompt_tokens == 5);
  CHECK(timings.decode_ms > 0);
  af_result_free(result);

  /* The callback cancels after 3 tokens. */
  stream_state cancel = {0};
  cancel.stop_after = 3;
  CHECK(af_generate(model, "Once upon a time", &params, on_token, &cancel, &result) == AF_OK);
  af_result_tokens(result, &n_tokens);
  CHECK(n_tokens == 3);
  CHECK(strcmp(af_result_finish_reason(result), "cancelled") == 0);
  af_result_free(result);

  /* A stop string ends generation before it. */
  const char* stops[] = {"Lily"};
  params.stop = stops;
  params.n_stop = 1;
  CHECK(af_generate(model, "Once upon a time", &params, NULL, NULL, &result) == AF_OK);
  CHECK(strcmp(af_result_text(result, NULL), ", there was a little girl named ") == 0);
  CHECK(strcmp(af_result_finish_reason(result), "stop") == 0);
  af_result_free(result);

  params.stop = NULL;
  params.n_stop = 0;
  params.max_tokens = 0;
  result = (af_result*)1;
  CHECK(af_generate(model, "Once upon a time", &params, NULL, NULL, &result) ==
        AF_ERR_INVALID_ARGUMENT);
  CHECK(result == NULL);
  CHECK(strstr(af_last_error(), "max_tokens") != NULL);
}

static void test_chat(af_model* model) {
  af_chat_message messages[] = {{"system", "You tell stories."}, {"user", "Tell me a story."}};
  af_generate_params params;
  af_generate_params_init(&params);
  params.max_tokens = 8;
  af_result* result = NULL;
  CHECK(af_chat(model, messages, 2, &params, NULL, NULL, &result) == AF_OK);
  size_t n_tokens = 0;
  af_result_tokens(result, &n_tokens);
  CHECK(n_tokens >= 1 && n_tokens <= 8);
  af_timings timings = af_result_timings(result);
  CHECK(timings.prompt_tokens > 10); /* ChatML markers + both messages */
  af_result_free(result);
  CHECK(af_chat(model, messages, 0, &params, NULL, NULL, &result) == AF_ERR_INVALID_ARGUMENT);
}

static void test_logits(af_model* model) {
  int32_t ids[16];
  size_t n = 0;
  CHECK(af_tokenize(model, "Once upon a time", 16, true, false, ids, 16, &n) == AF_OK);
  const size_t vocab = (size_t)af_model_vocab_size(model);
  CHECK(vocab == 512);
  size_t needed = 0;
  CHECK(af_logits(model, ids, n, NULL, 0, &needed) == AF_ERR_BUFFER_TOO_SMALL);
  CHECK(needed == n * vocab);
  float* logits = malloc(needed * sizeof(float));
  CHECK(af_logits(model, ids, n, logits, needed, &needed) == AF_OK);
  /* The last row's argmax is the first greedy token (",": the text continues ", there"). */
  const float* last = logits + (n - 1) * vocab;
  size_t best = 0;
  int finite = 1;
  for (size_t i = 0; i < vocab; ++i) {
    if (last[i] > last[best]) best = i;
    if (!isfinite(last[i])) finite = 0;
  }
  CHECK(finite);
  af_generate_params params;
  af_generate_params_init(&params);
  params.max_tokens = 1;
  af_result* result = NULL;
  CHECK(af_generate(model, "Once upon a time", &params, NULL, NULL, &result) == AF_OK);
  size_t n_tokens = 0;
  const int32_t* generated = af_result_tokens(result, &n_tokens);
  CHECK(n_tokens == 1 && (size_t)generated[0] == best);
  af_result_free(result);
  free(logits);
  const int32_t bad[] = {1, 100000};
  CHECK(af_logits(model, bad, 2, NULL, 0, &needed) == AF_ERR_BUFFER_TOO_SMALL);
  float small[2 * 512];
  CHECK(af_logits(model, bad, 2, small, 2 * 512, &needed) == AF_ERR_INVALID_ARGUMENT);
  CHECK(strstr(af_last_error(), "100000") != NULL);
}

int main(int argc, char** argv) {
  if (argc < 2) {
    fprintf(stderr, "usage: %s STORIES260K_GGUF\n", argv[0]);
    return 2;
  }
  test_errors();
  af_load_options options;
  af_load_options_init(&options);
  options.threads = 1;
  af_model* model = NULL;
  CHECK(af_model_load(argv[1], &options, &model) == AF_OK);
  if (model == NULL) {
    fprintf(stderr, "cannot load %s: %s\n", argv[1], af_last_error());
    return 1;
  }
  test_tokenizer(model);
  test_generate(model);
  test_chat(model);
  test_logits(model);
  af_model_free(model);
  printf("c_api: %d passed, %d failed\n", passed, failed);
  return failed == 0 ? 0 : 1;
}
