// Subword tokenizer: a SentencePiece model (Kudo & Richardson 2018) behind a
// small C interface. The implementation (io/tokenizer.cc) is the one C++ file
// of the program; it links Debian's libsentencepiece.
//
// Models are the standard `.model` files (a serialized ModelProto), the same
// bytes transformers' ReformerTokenizer reads as spiece.model. This program
// requires byte fallback (the 256 pieces <0x00> .. <0xFF>), and trains its own
// models (`reformer tokenize`) with
//   byte_fallback=true, normalization identity, add_dummy_prefix=false,
//   remove_extra_whitespaces=false, bos and eos off (ids: unk 0, then the
//   256 byte pieces, then the learned pieces)
// so that decode(encode(x)) == x for ANY bytes x: characters outside the
// vocabulary become their UTF-8 bytes, and what SentencePiece itself cannot
// carry through (invalid UTF-8, NUL, U+2581 "▁", which it uses for the space)
// is encoded here, byte by byte, as byte pieces.
//
// Decoding is done here too, from a table of each id's bytes: a byte piece is
// its byte, a normal piece its text with "▁" turned back into a space, a
// control or unknown piece nothing. So every token decodes to a fixed byte
// string, and the bytes a run of tokens stands for is the sum over its tokens
// (bits per byte, launch/evaluate.h).
#pragma once
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct Tokenizer Tokenizer;

// Load a .model file (key: the config key or flag named in errors) or the
// same bytes from memory (a checkpoint's). NULL with a one-line message
// naming key/what on failure: missing, not a SentencePiece model, or a model
// without byte fallback.
Tokenizer *tokenizer_load(const char *path, const char *key, char *err, size_t errlen);
Tokenizer *tokenizer_from_bytes(const void *bytes, size_t n, const char *what, char *err, size_t errlen);
void tokenizer_free(Tokenizer *t);

int tokenizer_vocab_size(const Tokenizer *t);
// The model file's bytes (what a checkpoint stores, export-hf's spiece.model).
const void *tokenizer_model_bytes(const Tokenizer *t, size_t *n);
// FNV-1a 64 of the model bytes: the model's identity (token cache keys).
uint64_t tokenizer_identity(const Tokenizer *t);

// The bytes token id decodes to (*len of them; 0 for control pieces).
const uint8_t *tokenizer_piece_bytes(const Tokenizer *t, int id, int *len);

// Encode n bytes of any content, appending the ids to *ids (realloc'ed,
// *n_ids used, *cap allocated). Thread-safe for one Tokenizer. Returns 0, or
// -1 with a message (SentencePiece failed; not expected after a load).
int tokenizer_encode(const Tokenizer *t, const uint8_t *text, size_t n, int32_t **ids, size_t *n_ids, size_t *cap,
                     char *err, size_t errlen);

// Decode: the bytes of ids[0..n) written to out (out may be NULL to size it).
// Returns the byte count. Ids outside the vocabulary decode to nothing.
size_t tokenizer_decode(const Tokenizer *t, const int *ids, size_t n, uint8_t *out);

// Train a model on texts[0..n_texts) (each cut into lines; every line a
// training sentence) and write it to out_path (through out_path.tmp and a
// rename). type: "unigram" or "bpe". max_sentences: lines sampled at most
// (0: all). Returns 0, or -1 with a one-line message.
int tokenizer_train(const uint8_t *const *texts, const size_t *lens, long n_texts, int vocab_size, const char *type,
                    long max_sentences, const char *out_path, char *err, size_t errlen);

#ifdef __cplusplus
}
#endif
