// llama-logits: what llama.cpp itself computes for a prompt, as one JSON line,
// so that a GGUF written by `llama-wgpu convert` can be compared with
// llama-wgpu and transformers on the same file (docs/interop.md).
// Built by `scripts/llama-cpp.sh build` against the llama.cpp it builds.
//
//   llama-logits -m FILE.gguf -p PROMPT [-n N] [--from K] [--ngl N] [--f32-kv]
//
// Prints {"ids": [...], "logits_from": K, "logits": [[...] for positions K..],
// "greedy": [N argmax continuations], "text": "..."}. The prompt is tokenized
// by llama.cpp (its BOS rule, special tokens parsed); the logits of every
// prompt position from K on are printed in full; greedy decoding then feeds
// one token at a time, as the other engines' greedy paths do. --f32-kv keeps
// the KV cache in f32 and turns flash attention off (llama.cpp's defaults, an
// f16 cache and, on the CPU, f16 attention, round at about 1e-3), so that an
// f32 file can be checked against an f32 reference at f32 precision.
#include "llama.h"

#include <clocale>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

// Token pieces of a random model are often parts of UTF-8 sequences; JSON
// cannot carry those bytes, so each invalid byte becomes U+FFFD.
static void json_string(const std::string & s) {
    std::putchar('"');
    size_t i = 0;
    while (i < s.size()) {
        unsigned char c = s[i];
        size_t len = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 0;
        bool ok = len > 0 && i + len <= s.size();
        for (size_t k = 1; ok && k < len; k++) {
            ok = (static_cast<unsigned char>(s[i + k]) >> 6) == 2;
        }
        if (!ok) {
            std::printf("\\ufffd");
            i++;
        } else if (c == '"' || c == '\\') {
            std::printf("\\%c", c);
            i++;
        } else if (c < 0x20) {
            std::printf("\\u%04x", c);
            i++;
        } else {
            std::fwrite(s.data() + i, 1, len, stdout);
            i += len;
        }
    }
    std::putchar('"');
}

static int argmax(const float * v, int n) {
    int best = 0;
    for (int i = 1; i < n; i++) {
        if (v[i] > v[best]) {
            best = i;
        }
    }
    return best;
}

static void quiet_log(ggml_log_level level, const char * text, void *) {
    if (level >= GGML_LOG_LEVEL_WARN) {
        std::fputs(text, stderr);
    }
}

int main(int argc, char ** argv) {
    std::setlocale(LC_NUMERIC, "C");
    std::string model_path, prompt;
    int n_greedy = 6, from = -1, ngl = 0;
    bool verbose = false, f32_kv = false;
    for (int i = 1; i < argc; i++) {
        std::string a = argv[i];
        auto next = [&]() -> const char * {
            if (i + 1 >= argc) {
                std::fprintf(stderr, "error: %s needs a value\n", a.c_str());
                std::exit(2);
            }
            return argv[++i];
        };
        if (a == "-m") {
            model_path = next();
        } else if (a == "-p") {
            prompt = next();
        } else if (a == "-n") {
            n_greedy = std::atoi(next());
        } else if (a == "--from") {
            from = std::atoi(next());
        } else if (a == "--ngl") {
            ngl = std::atoi(next());
        } else if (a == "--f32-kv") {
            f32_kv = true;
        } else if (a == "-v") {
            verbose = true;
        } else {
            std::fprintf(stderr, "usage: %s -m FILE.gguf -p PROMPT [-n N] [--from K] [--ngl N] [--f32-kv] [-v]\n", argv[0]);
            return 2;
        }
    }
    if (model_path.empty()) {
        std::fprintf(stderr, "error: -m FILE.gguf is required\n");
        return 2;
    }
    if (!verbose) {
        llama_log_set(quiet_log, nullptr);
    }
    llama_backend_init();

    llama_model_params mp = llama_model_default_params();
    mp.n_gpu_layers = ngl;
    llama_model * model = llama_model_load_from_file(model_path.c_str(), mp);
    if (!model) {
        std::fprintf(stderr, "error: llama.cpp could not load %s\n", model_path.c_str());
        return 1;
    }
    const llama_vocab * vocab = llama_model_get_vocab(model);
    const int n_vocab = llama_vocab_n_tokens(vocab);

    std::vector<llama_token> ids(prompt.size() + 8);
    int n = llama_tokenize(vocab, prompt.c_str(), (int) prompt.size(), ids.data(), (int) ids.size(),
                           llama_vocab_get_add_bos(vocab), true);
    if (n < 0) {
        std::fprintf(stderr, "error: tokenization failed\n");
        return 1;
    }
    ids.resize(n);
    if (ids.empty()) {
        std::fprintf(stderr, "error: the prompt has no tokens\n");
        return 1;
    }
    if (from < 0 || from >= n) {
        from = n - 1;
    }

    llama_context_params cp = llama_context_default_params();
    cp.n_ctx = n + n_greedy + 8;
    cp.n_batch = cp.n_ctx;
    cp.n_ubatch = cp.n_ctx;
    if (f32_kv) {
        cp.type_k = GGML_TYPE_F32;
        cp.type_v = GGML_TYPE_F32;
        cp.flash_attn_type = LLAMA_FLASH_ATTN_TYPE_DISABLED;
    }
    llama_context * ctx = llama_init_from_model(model, cp);
    if (!ctx) {
        std::fprintf(stderr, "error: could not create a llama.cpp context\n");
        return 1;
    }

    llama_batch batch = llama_batch_init(n, 0, 1);
    for (int i = 0; i < n; i++) {
        batch.token[i] = ids[i];
        batch.pos[i] = i;
        batch.n_seq_id[i] = 1;
        batch.seq_id[i][0] = 0;
        batch.logits[i] = i >= from;
    }
    batch.n_tokens = n;
    if (llama_decode(ctx, batch) != 0) {
        std::fprintf(stderr, "error: llama_decode failed on the prompt\n");
        return 1;
    }

    std::printf("{\"ids\": [");
    for (int i = 0; i < n; i++) {
        std::printf("%s%d", i ? ", " : "", ids[i]);
    }
    std::printf("], \"logits_from\": %d, \"logits\": [", from);
    for (int i = from; i < n; i++) {
        const float * l = llama_get_logits_ith(ctx, i);
        std::printf("%s[", i > from ? ", " : "");
        for (int j = 0; j < n_vocab; j++) {
            std::printf("%s%.9g", j ? ", " : "", l[j]);
        }
        std::printf("]");
    }
    std::printf("], \"greedy\": [");
    std::string text;
    llama_token tok = argmax(llama_get_logits_ith(ctx, n - 1), n_vocab);
    for (int k = 0; k < n_greedy; k++) {
        std::printf("%s%d", k ? ", " : "", tok);
        char piece[256];
        int len = llama_token_to_piece(vocab, tok, piece, sizeof piece, 0, true);
        if (len > 0) {
            text.append(piece, len);
        }
        if (k + 1 == n_greedy) {
            break;
        }
        llama_batch one = llama_batch_get_one(&tok, 1);
        if (llama_decode(ctx, one) != 0) {
            std::fprintf(stderr, "error: llama_decode failed at greedy step %d\n", k);
            return 1;
        }
        tok = argmax(llama_get_logits_ith(ctx, -1), n_vocab);
    }
    std::printf("], \"text\": ");
    json_string(text);
    std::printf("}\n");

    llama_batch_free(batch);
    llama_free(ctx);
    llama_model_free(model);
    llama_backend_free();
    return 0;
}
