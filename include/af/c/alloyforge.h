/* AlloyForge C API: load a model, tokenize, generate (streaming, cancellable), chat, logits.
 *
 *   af_model* model = NULL;
 *   if (af_model_load("stories260K.gguf", NULL, &model) != AF_OK) {
 *     fprintf(stderr, "%s\n", af_last_error());
 *     return 1;
 *   }
 *   af_result* result = NULL;
 *   af_generate(model, "Once upon a time", NULL, NULL, NULL, &result);
 *   printf("%s\n", af_result_text(result, NULL));
 *   af_result_free(result);
 *   af_model_free(model);
 *
 * Conventions: every function that can fail returns an af_status; on failure af_last_error()
 * gives the library's message (naming the file, field or tensor at fault) until the next failing
 * call on the same thread. Handles are opaque. Strings are UTF-8; those passed in are
 * NUL-terminated unless a length is given. Memory the library returns is owned by the handle it
 * came from (or freed with its af_*_free). An af_model is used by one thread at a time, except
 * af_model_cancel(), which any thread may call. Options structs start with struct_size so that
 * later versions can add fields: fill them with the matching *_init() function. */
#ifndef AF_C_ALLOYFORGE_H
#define AF_C_ALLOYFORGE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef enum af_status {
  AF_OK = 0,
  AF_ERR_INVALID_ARGUMENT = 1, /* the caller passed something unusable (NULL, id, option) */
  AF_ERR_FORMAT = 2,           /* a file's content is malformed */
  AF_ERR_IO = 3,               /* the OS refused (open, mmap, read) */
  AF_ERR_UNSUPPORTED = 4,      /* valid input this build cannot handle */
  AF_ERR_OUT_OF_RANGE = 5,     /* context / position / limit exceeded */
  AF_ERR_BUFFER_TOO_SMALL = 6, /* the output buffer is too small: *needed says how large */
  AF_ERR_OUT_OF_MEMORY = 7,
  AF_ERR_INTERNAL = 8
} af_status;

/* "ok", "invalid_argument", ...; never NULL. */
const char* af_status_name(af_status status);
/* The message of the last failed call on this thread ("" if none). */
const char* af_last_error(void);
/* The library's version, e.g. "0.1.0". */
const char* af_version(void);

typedef struct af_model af_model;   /* a loaded model with its tokenizer and KV cache */
typedef struct af_result af_result; /* the outcome of af_generate / af_chat */

typedef struct af_load_options {
  size_t struct_size;   /* sizeof(af_load_options) */
  const char* dtype;    /* "f32", "f16", "bf16", "q8_0", ...; NULL: as stored */
  const char* quantize; /* quantize float weights at load: "q8_0", "q4_0", "q4_k", ...; NULL: no */
  int32_t threads;      /* 0: all hardware threads */
  int64_t context_length; /* KV cache rows; 0: the model's trained context */
} af_load_options;

void af_load_options_init(af_load_options* options);

/* path: a Hugging Face folder, a .safetensors file (config.json beside it) or a .gguf file.
 * options may be NULL (defaults). The chat template is the model's own, or ChatML when it ships
 * none. On success *out is a new model (af_model_free it). */
af_status af_model_load(const char* path, const af_load_options* options, af_model** out);
void af_model_free(af_model* model); /* NULL is ignored */

int64_t af_model_vocab_size(const af_model* model);
int64_t af_model_context_length(const af_model* model);

/* Text -> ids. add_special: BOS etc. as the tokenizer's configuration says; parse_special:
 * special-token text becomes control tokens. Writes at most capacity ids; *n_ids is the number
 * of ids of the text (AF_ERR_BUFFER_TOO_SMALL when it exceeds capacity: call again with a larger
 * buffer; ids may be NULL with capacity 0 to ask for the count). */
af_status af_tokenize(af_model* model, const char* text, size_t text_len, bool add_special,
                      bool parse_special, int32_t* ids, size_t capacity, size_t* n_ids);
/* Ids -> text, NUL-terminated. *text_len is the length without the NUL; the buffer needs
 * *text_len + 1 bytes (AF_ERR_BUFFER_TOO_SMALL otherwise; text may be NULL with capacity 0). */
af_status af_detokenize(af_model* model, const int32_t* ids, size_t n_ids, bool skip_special,
                        char* text, size_t capacity, size_t* text_len);

typedef struct af_generate_params {
  size_t struct_size;       /* sizeof(af_generate_params) */
  int32_t max_tokens;       /* >= 1; default 256 */
  float temperature;        /* 0: greedy (default) */
  int32_t top_k;            /* 0: off */
  float top_p;              /* 1: off */
  float min_p;              /* 0: off */
  float repetition_penalty; /* 1: off */
  uint64_t seed;
  const char* const* stop; /* n_stop stop strings: generation ends before the first one */
  size_t n_stop;
  bool ignore_eos; /* keep generating past end-of-sequence tokens */
} af_generate_params;

void af_generate_params_init(af_generate_params* params);

/* Called for every generated token with the text that became final with it (may be empty while
 * the bytes of a character or a possible stop string are held back; not NUL-terminated). Return
 * false to stop: the result's finish reason is then "cancelled". */
typedef bool (*af_token_callback)(const char* text, size_t text_len, int32_t id, void* user_data);

/* Generates from a text prompt (tokenized with BOS as the tokenizer says). params and on_token
 * may be NULL. On success *out is a new result (af_result_free it). */
af_status af_generate(af_model* model, const char* prompt, const af_generate_params* params,
                      af_token_callback on_token, void* user_data, af_result** out);

typedef struct af_chat_message {
  const char* role; /* "system", "user", "assistant", "tool" */
  const char* content;
} af_chat_message;

/* The assistant's reply to the conversation `messages` with the model's chat template. Special
 * tokens written in content stay plain text. Otherwise as af_generate. */
af_status af_chat(af_model* model, const af_chat_message* messages, size_t n_messages,
                  const af_generate_params* params, af_token_callback on_token, void* user_data,
                  af_result** out);

/* Asks a running af_generate / af_chat (on another thread) to stop after the current token. */
void af_model_cancel(af_model* model);

/* Logits of every position of ids (a fresh sequence): n_ids rows of vocab_size floats into
 * logits, which holds capacity floats (AF_ERR_BUFFER_TOO_SMALL with *needed otherwise). */
af_status af_logits(af_model* model, const int32_t* ids, size_t n_ids, float* logits,
                    size_t capacity, size_t* needed);

typedef struct af_timings {
  double prefill_ms;
  double decode_ms;
  double time_to_first_token_ms;
  double prompt_tokens_per_s;
  double generated_tokens_per_s;
  int64_t prompt_tokens; /* prompt length */
  int64_t cached_tokens; /* prompt tokens reused from the KV cache */
} af_timings;

/* The generated text without stop strings and end tokens, NUL-terminated; *len (may be NULL)
 * gets its length. Valid until af_result_free. */
const char* af_result_text(const af_result* result, size_t* len);
/* Every generated id (including a final end token); *n gets the count. */
const int32_t* af_result_tokens(const af_result* result, size_t* n);
/* "stop", "length", "context_full" or "cancelled". */
const char* af_result_finish_reason(const af_result* result);
af_timings af_result_timings(const af_result* result);
void af_result_free(af_result* result); /* NULL is ignored */

#ifdef __cplusplus
}
#endif

#endif /* AF_C_ALLOYFORGE_H */
