/* The C API: load a model, stream a greedy continuation, print the timings.
 *   c_generate MODEL [PROMPT] */
#include <stdio.h>

#include "af/c/alloyforge.h"

static bool print_piece(const char* text, size_t len, int32_t id, void* user_data) {
  (void)id;
  (void)user_data;
  fwrite(text, 1, len, stdout);
  fflush(stdout);
  return true; /* false would stop generation here */
}

int main(int argc, char** argv) {
  const char* path = argc > 1 ? argv[1] : "../shared/testdata/models/stories260K/stories260K.gguf";
  const char* prompt = argc > 2 ? argv[2] : "Once upon a time";
  af_model* model = NULL;
  if (af_model_load(path, NULL, &model) != AF_OK) {
    fprintf(stderr, "error: %s\n", af_last_error());
    return 1;
  }
  af_generate_params params;
  af_generate_params_init(&params);
  params.max_tokens = 48;
  af_result* result = NULL;
  printf("%s", prompt);
  if (af_generate(model, prompt, &params, print_piece, NULL, &result) != AF_OK) {
    fprintf(stderr, "error: %s\n", af_last_error());
    af_model_free(model);
    return 1;
  }
  const af_timings t = af_result_timings(result);
  fprintf(stderr, "\n[%s] %.1f tokens/s\n", af_result_finish_reason(result),
          t.generated_tokens_per_s);
  af_result_free(result);
  af_model_free(model);
  return 0;
}
