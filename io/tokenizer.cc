// The SentencePiece tokenizer behind io/tokenizer.h (the program's one C++
// file: SentencePiece is a C++ library). Everything that crosses the C
// interface is plain bytes and ints; no exception escapes it.
#include "tokenizer.h"

#include <sentencepiece_processor.h>
#include <sentencepiece_trainer.h>

#include <cerrno>
#include <cstdarg>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <new>
#include <sstream>
#include <string>
#include <vector>

struct Tokenizer {
    sentencepiece::SentencePieceProcessor sp;
    std::string model;                 // the .model bytes
    uint64_t identity;
    int vocab;
    int byte_id[256];                  // id of the byte piece <0xNN>
    std::vector<uint8_t> blob;         // decoded bytes of every id, concatenated
    std::vector<uint32_t> offset;      // [vocab + 1] into blob
};

// One-line errors: io/data_source.h's (C linkage).
extern "C" int data_fail(char *err, size_t errlen, const char *fmt, ...);
#define fail data_fail

static uint64_t fnv1a64(const void *p, size_t n) {
    const unsigned char *b = (const unsigned char *)p;
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < n; i++) h = (h ^ b[i]) * 1099511628211ull;
    return h;
}

// The piece table and byte ids; -1 with a message when the model lacks byte
// fallback (round trips of arbitrary bytes need it).
static int build_tables(Tokenizer *t, const char *what, char *err, size_t errlen) {
    t->vocab = t->sp.GetPieceSize();
    for (int b = 0; b < 256; b++) {
        char piece[8];
        snprintf(piece, sizeof piece, "<0x%02X>", b);
        int id = t->sp.PieceToId(piece);
        if (!t->sp.IsByte(id))
            return fail(err, errlen,
                        "%s: the SentencePiece model has no byte-fallback piece %s: this program needs byte_fallback "
                        "(train one with `reformer tokenize`)",
                        what, piece);
        t->byte_id[b] = id;
    }
    t->offset.assign((size_t)t->vocab + 1, 0);
    static const char kSpace[] = "\xe2\x96\x81";  // U+2581, SentencePiece's space
    for (int id = 0; id < t->vocab; id++) {
        t->offset[(size_t)id] = (uint32_t)t->blob.size();
        if (t->sp.IsControl(id) || t->sp.IsUnknown(id)) continue;
        const std::string &p = t->sp.IdToPiece(id);
        if (t->sp.IsByte(id)) {
            t->blob.push_back((uint8_t)strtol(p.c_str() + 3, NULL, 16));
            continue;
        }
        for (size_t i = 0; i < p.size();) {
            if (p.compare(i, 3, kSpace) == 0) t->blob.push_back(' '), i += 3;
            else t->blob.push_back((uint8_t)p[i++]);
        }
    }
    t->offset[(size_t)t->vocab] = (uint32_t)t->blob.size();
    return 0;
}

extern "C" Tokenizer *tokenizer_from_bytes(const void *bytes, size_t n, const char *what, char *err, size_t errlen) {
    Tokenizer *t = new (std::nothrow) Tokenizer();
    if (!t) {
        fail(err, errlen, "%s: out of memory loading the tokenizer", what);
        return NULL;
    }
    try {
        t->model.assign((const char *)bytes, n);
        auto st = t->sp.LoadFromSerializedProto(t->model);
        if (!st.ok()) {
            fail(err, errlen, "%s: not a SentencePiece model (%zu bytes that do not parse as one)", what, n);
            delete t;
            return NULL;
        }
        t->identity = fnv1a64(t->model.data(), t->model.size());
        if (build_tables(t, what, err, errlen)) {
            delete t;
            return NULL;
        }
    } catch (const std::exception &e) {
        fail(err, errlen, "%s: cannot load the tokenizer: %s", what, e.what());
        delete t;
        return NULL;
    }
    return t;
}

extern "C" Tokenizer *tokenizer_load(const char *path, const char *key, char *err, size_t errlen) {
    std::ifstream f(path, std::ios::binary);
    if (!f) {
        fail(err, errlen, "%s: cannot open '%s': %s (give a .model file made by `reformer tokenize`)", key, path,
             strerror(errno));
        return NULL;
    }
    std::stringstream ss;
    ss << f.rdbuf();
    if (f.bad()) {
        fail(err, errlen, "%s: cannot read '%s'", key, path);
        return NULL;
    }
    std::string bytes = ss.str();
    char what[1200];
    snprintf(what, sizeof what, "%s: '%s'", key, path);
    if (bytes.empty()) {
        fail(err, errlen, "%s is empty, not a SentencePiece model", what);
        return NULL;
    }
    return tokenizer_from_bytes(bytes.data(), bytes.size(), what, err, errlen);
}

extern "C" void tokenizer_free(Tokenizer *t) { delete t; }
extern "C" int tokenizer_vocab_size(const Tokenizer *t) { return t->vocab; }
extern "C" const void *tokenizer_model_bytes(const Tokenizer *t, size_t *n) {
    *n = t->model.size();
    return t->model.data();
}
extern "C" uint64_t tokenizer_identity(const Tokenizer *t) { return t->identity; }

extern "C" const uint8_t *tokenizer_piece_bytes(const Tokenizer *t, int id, int *len) {
    if (id < 0 || id >= t->vocab) {
        *len = 0;
        return NULL;
    }
    *len = (int)(t->offset[(size_t)id + 1] - t->offset[(size_t)id]);
    return t->blob.data() + t->offset[(size_t)id];
}

extern "C" size_t tokenizer_decode(const Tokenizer *t, const int *ids, size_t n, uint8_t *out) {
    size_t total = 0;
    for (size_t i = 0; i < n; i++) {
        int len;
        const uint8_t *p = tokenizer_piece_bytes(t, ids[i], &len);
        if (out && len) memcpy(out + total, p, (size_t)len);
        total += (size_t)len;
    }
    return total;
}

// Length of the UTF-8 character at s[0..n) that SentencePiece can carry
// through unchanged, or 0 for a byte it cannot (invalid UTF-8, an overlong or
// surrogate form, NUL, U+2581).
static size_t clean_char(const uint8_t *s, size_t n) {
    uint8_t c = s[0];
    if (c == 0) return 0;
    if (c < 0x80) return 1;
    size_t len = c >= 0xF0 ? 4 : c >= 0xE0 ? 3 : c >= 0xC0 ? 2 : 0;
    if (len == 0 || c > 0xF4 || len > n) return 0;
    uint32_t cp = c & (0x7F >> len);
    for (size_t i = 1; i < len; i++) {
        if ((s[i] & 0xC0) != 0x80) return 0;
        cp = cp << 6 | (s[i] & 0x3F);
    }
    static const uint32_t min_cp[5] = {0, 0, 0x80, 0x800, 0x10000};
    if (cp < min_cp[len] || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF) || cp == 0x2581) return 0;
    return len;
}

static void push(int32_t **ids, size_t *n_ids, size_t *cap, int32_t id) {
    if (*n_ids == *cap) {
        size_t c = *cap ? 2 * *cap : 1024;
        int32_t *p = (int32_t *)realloc(*ids, c * sizeof(int32_t));
        if (!p) {
            fprintf(stderr, "reformer: error: out of memory encoding text (%zu tokens)\n", c);
            exit(1);
        }
        *ids = p, *cap = c;
    }
    (*ids)[(*n_ids)++] = id;
}

extern "C" int tokenizer_encode(const Tokenizer *t, const uint8_t *text, size_t n, int32_t **ids, size_t *n_ids,
                                size_t *cap, char *err, size_t errlen) {
    try {
        std::vector<int> out;
        for (size_t i = 0; i < n;) {
            size_t j = i, len;
            while (j < n && (len = clean_char(text + j, n - j)) > 0) j += len;
            if (j > i) {  // a clean run: SentencePiece
                out.clear();
                auto st = t->sp.Encode(absl::string_view((const char *)text + i, j - i), &out);
                if (!st.ok()) return fail(err, errlen, "tokenizer: encoding failed: %s", st.ToString().c_str());
                for (int id : out) push(ids, n_ids, cap, id);
            }
            if (j < n) push(ids, n_ids, cap, t->byte_id[text[j++]]);  // a byte it cannot carry
            i = j;
        }
    } catch (const std::exception &e) {
        return fail(err, errlen, "tokenizer: encoding failed: %s", e.what());
    }
    return 0;
}

// ------------------------------------------------------------------ training

// Lines of the training texts, in order; empty lines skipped.
class LineIterator : public sentencepiece::SentenceIterator {
  public:
    LineIterator(const uint8_t *const *texts, const size_t *lens, long n) : texts_(texts), lens_(lens), n_(n) { Next(); }
    bool done() const override { return done_; }
    void Next() override {
        while (doc_ < n_) {
            const char *s = (const char *)texts_[doc_];
            size_t len = lens_[doc_];
            if (pos_ >= len) {
                doc_++, pos_ = 0;
                continue;
            }
            const char *nl = (const char *)memchr(s + pos_, '\n', len - pos_);
            size_t end = nl ? (size_t)(nl - s) : len;
            value_.assign(s + pos_, end - pos_);
            pos_ = end + 1;
            if (!value_.empty()) return;
        }
        done_ = true;
    }
    const std::string &value() const override { return value_; }
    sentencepiece::util::Status status() const override { return sentencepiece::util::Status(); }

  private:
    const uint8_t *const *texts_;
    const size_t *lens_;
    long n_, doc_ = 0;
    size_t pos_ = 0;
    std::string value_;
    bool done_ = false;
};

extern "C" int tokenizer_train(const uint8_t *const *texts, const size_t *lens, long n_texts, int vocab_size,
                               const char *type, long max_sentences, const char *out_path, char *err, size_t errlen) {
    if (strcmp(type, "unigram") && strcmp(type, "bpe"))
        return fail(err, errlen, "--type: '%s' is not a tokenizer type (unigram or bpe)", type);
    std::string model;
    try {
        // Byte fallback and an identity normalizer without a dummy prefix: the
        // round trip of tokenizer.h. bos/eos off: documents are not sentences.
        char args[512];
        snprintf(args, sizeof args,
                 "--model_type=%s --vocab_size=%d --byte_fallback=true --unk_id=0 --bos_id=-1 --eos_id=-1 "
                 "--normalization_rule_name=identity --add_dummy_prefix=false --remove_extra_whitespaces=false "
                 "--allow_whitespace_only_pieces=true --max_sentence_length=65536 --input_sentence_size=%ld "
                 "--shuffle_input_sentence=true --num_threads=2 --minloglevel=1",
                 type, vocab_size, max_sentences);
        LineIterator lines(texts, lens, n_texts);
        auto st = sentencepiece::SentencePieceTrainer::Train(args, &lines, &model);
        if (!st.ok())
            return fail(err, errlen, "tokenize: SentencePiece training failed: %s", st.ToString().c_str());
    } catch (const std::exception &e) {
        return fail(err, errlen, "tokenize: SentencePiece training failed: %s", e.what());
    }
    std::string tmp = std::string(out_path) + ".tmp";
    FILE *f = fopen(tmp.c_str(), "wb");
    if (!f) return fail(err, errlen, "--out: cannot write '%s': %s", tmp.c_str(), strerror(errno));
    bool ok = fwrite(model.data(), 1, model.size(), f) == model.size();
    ok = (fclose(f) == 0) && ok;
    if (!ok || rename(tmp.c_str(), out_path) != 0) {
        int e = errno;
        remove(tmp.c_str());
        return fail(err, errlen, "--out: cannot write '%s': %s", out_path, strerror(e));
    }
    return 0;
}
