// Dumps llama.cpp's logits at every position of one pass over ids (F32 KV cache, flash attention
// off, n_ctx = n_batch = n_ubatch = 256, 2 threads) as raw float32 [n_ids, vocab]:
//   dump_logits model.gguf out.bin id...
// For tools/make_phi3_models.py --llamacpp-dump (no llama-cpp-python needed). Build against the
// peer llama.cpp (L=/work/peers/llama.cpp):
//   g++ -O1 -std=c++17 tools/llamacpp_dump_logits.cpp -I$L/include -I$L/ggml/include \
//     -L$L/build/bin -lllama -lggml -lggml-base -Wl,-rpath,$L/build/bin -o dump_logits
#include <cstdio>
#include <cstdlib>
#include <vector>
#include "llama.h"
int main(int argc, char** argv) {
  if (argc < 4) return 2;
  llama_backend_init();
  llama_model_params mp = llama_model_default_params();
  llama_model* model = llama_model_load_from_file(argv[1], mp);
  if (!model) return 3;
  llama_context_params cp = llama_context_default_params();
  cp.n_ctx = cp.n_batch = cp.n_ubatch = 256;
  cp.n_threads = cp.n_threads_batch = 2;
  cp.type_k = cp.type_v = GGML_TYPE_F32;
  cp.flash_attn_type = LLAMA_FLASH_ATTN_TYPE_DISABLED;
  llama_context* ctx = llama_init_from_model(model, cp);
  if (!ctx) return 4;
  const int n = argc - 3;
  llama_batch b = llama_batch_init(n, 0, 1);
  for (int i = 0; i < n; ++i) {
    b.token[i] = atoi(argv[3 + i]);
    b.pos[i] = i;
    b.n_seq_id[i] = 1;
    b.seq_id[i][0] = 0;
    b.logits[i] = 1;
  }
  b.n_tokens = n;
  if (llama_decode(ctx, b) != 0) return 5;
  const int vocab = llama_vocab_n_tokens(llama_model_get_vocab(model));
  FILE* f = fopen(argv[2], "wb");
  for (int i = 0; i < n; ++i) fwrite(llama_get_logits_ith(ctx, i), sizeof(float), vocab, f);
  fclose(f);
  llama_batch_free(b);
  llama_free(ctx);
  llama_model_free(model);
  return 0;
}
