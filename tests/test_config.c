// Unit tests of the config layer: config_set / config_set_pair /
// config_finalize (core/config.c) and config_load_file (io/config_file.c).
//
// Every rejected config must give -1 and a one-line message that names the
// key at fault; every derived value (d_head, n_buckets, axial shape and dims,
// per-layer attention kind) is checked against its rule in config.h.
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "config.h"
#include "config_file.h"

#define ERRLEN 1024

// Apply "key=value" pairs (NULL-terminated) in order, then finalize. Returns
// 0, or -1 at the first failure with its message in err.
static int apply(Config *c, const char *const *pairs, char *err, size_t errlen) {
    for (int i = 0; pairs[i]; i++)
        if (config_set_pair(c, pairs[i], err, errlen)) return -1;
    return config_finalize(c, err, errlen);
}

static void assert_one_line_naming(const char *err, const char *key, const char *what) {
    cr_assert(err[0] != '\0', "%s: empty error message", what);
    cr_assert(strchr(err, '\n') == NULL, "%s: error is not one line: '%s'", what, err);
    cr_assert(strstr(err, key) != NULL, "%s: error '%s' does not name the key '%s'", what, err, key);
}

// Defaults plus pairs must be rejected with a message naming key (and also
// also_named, when not NULL: e.g. seq_len in a chunk-multiple error).
static void expect_bad(const char *key, const char *also_named, const char *const *pairs) {
    Config c;
    config_defaults(&c);
    char err[ERRLEN] = "";
    char what[256] = "";
    for (int i = 0; pairs[i]; i++)
        snprintf(what + strlen(what), sizeof what - strlen(what), "%s%s", i ? " " : "", pairs[i]);
    int rc = apply(&c, pairs, err, sizeof err);
    cr_assert_eq(rc, -1, "%s: accepted, expected an error naming '%s'", what, key);
    assert_one_line_naming(err, key, what);
    if (also_named) assert_one_line_naming(err, also_named, what);
}

#define EXPECT_BAD(key, also, ...) expect_bad(key, also, (const char *const[]){__VA_ARGS__, NULL})

static void expect_ok(Config *c, const char *const *pairs) {
    config_defaults(c);
    char err[ERRLEN] = "";
    int rc = apply(c, pairs, err, sizeof err);
    cr_assert_eq(rc, 0, "rejected: %s", err);
}

#define EXPECT_OK(c, ...) expect_ok(c, (const char *const[]){__VA_ARGS__, NULL})

// ---------------------------------------------------------------- defaults

Test(config, defaults_finalize) {
    Config c;
    config_defaults(&c);
    char err[ERRLEN] = "";
    cr_assert_eq(config_finalize(&c, err, sizeof err), 0, "defaults rejected: %s", err);
    cr_assert_eq(c.d_head * c.n_heads, c.d_model);
    cr_assert_eq(c.n_axes, 2);
    cr_assert_eq((long)c.axial_shape[0] * c.axial_shape[1], c.seq_len);
    cr_assert_eq(c.axial_dims[0] + c.axial_dims[1], c.d_model);
    cr_assert(c.n_buckets >= 2 && c.n_buckets % 2 == 0);
    cr_assert_str_eq(c.device, "cpu");
    cr_assert_str_eq(c.data, "data/tinyshakespeare.txt");
}

Test(config, finalize_is_idempotent) {
    Config a, b;
    config_defaults(&a);
    char err[ERRLEN];
    cr_assert_eq(config_finalize(&a, err, sizeof err), 0, "%s", err);
    b = a;
    cr_assert_eq(config_finalize(&b, err, sizeof err), 0, "second finalize rejected: %s", err);
    cr_assert_eq(memcmp(&a, &b, sizeof a), 0, "a second config_finalize changed the config");
}

// --------------------------------------------------------- every key is set

// A sensible non-default value for every key, written exactly as config_print
// prints it back, so the test sees that the value really landed.
static const struct {
    const char *key, *value;
} KEY_VALUES[] = {
    {"vocab_size", "300"},     {"d_model", "256"},          {"d_ff", "256"},
    {"n_heads", "8"},          {"d_head", "16"},            {"n_layers", "6"},
    {"attn_layers", "lsh,local"}, {"attn", "full"},         {"lsh_chunk", "32"},
    {"local_chunk", "128"},    {"n_hashes", "4"},           {"n_buckets", "8"},       {"lsh_form", "strict"},
    {"axial_shape", "32,16"},  {"axial_dims", "32,96"},     {"ff_chunk", "256"},
    {"loss_chunk", "256"},     {"attn_head_group", "2"},    {"ff_activation", "relu"},   {"ln_eps", "1e-05"},
    {"dropout", "0.1"},        {"init_std", "0.01"},        {"reversible", "0"},
    {"emb_init_std", "0.5"},   {"axial_init_std", "0.02"},
    {"seq_len", "1024"},       {"batch", "8"},              {"sp", "2"},           {"sp_attention", "heads"}, {"sort_steps", "4"}, {"lr", "0.001"},
    {"warmup", "10"},          {"steps", "20"},             {"schedule", "rsqrt"},
    {"lr_min", "0"},           {"weight_decay", "0.01"},    {"beta1", "0.8"},
    {"beta2", "0.99"},         {"adam_eps", "1e-08"},       {"clip", "0"},
    {"seed", "42"},            {"data", "dup"},             {"dup_alphabet", "64"},
    {"out_dir", "/tmp/reformer-test-out"}, {"device", "cuda"}, {"precision", "bf16"}, {"attn_impl", "reference"},
    {"log_every", "5"},
    {"ckpt_every", "50"},      {"keep_ckpts", "0"},
    {"data_format", "enwik8"}, {"split_fractions", "0.8,0.1,0.1"}, {"cross_docs", "1"},
    {"whole_docs", "1"},       {"tokenizer", "/tmp/reformer-test.model"}, {"word_ppl", "1"},
    {"image_shape", "16,32,1"}, {"image_fit", "crop"},
    {"eval_every", "10"},      {"eval_windows", "0"},       {"watchdog_s", "30"},
};
#define N_KEY_VALUES (sizeof KEY_VALUES / sizeof KEY_VALUES[0])

static const char *value_for(const char *key) {
    for (size_t i = 0; i < N_KEY_VALUES; i++)
        if (!strcmp(KEY_VALUES[i].key, key)) return KEY_VALUES[i].value;
    return NULL;
}

// The "key=value" line config_print writes for key (into line), or 0 if none.
static int printed_line(const Config *c, const char *key, char *line, size_t cap) {
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    cr_assert_not_null(f);
    config_print(c, f);
    fclose(f);
    int found = 0;
    size_t klen = strlen(key);
    for (char *p = buf; p && *p;) {
        char *nl = strchr(p, '\n');
        size_t n = nl ? (size_t)(nl - p) : strlen(p);
        if (n > klen && !strncmp(p, key, klen) && p[klen] == '=') {
            snprintf(line, cap, "%.*s", (int)n, p);
            found = 1;
            break;
        }
        p = nl ? nl + 1 : NULL;
    }
    free(buf);
    return found;
}

Test(config, every_key_has_a_test_value) {
    for (int i = 0; CONFIG_KEYS[i]; i++)
        cr_assert_not_null(value_for(CONFIG_KEYS[i]), "key '%s' has no entry in KEY_VALUES", CONFIG_KEYS[i]);
}

Test(config, every_key_is_accepted_and_lands) {
    for (int i = 0; CONFIG_KEYS[i]; i++) {
        const char *key = CONFIG_KEYS[i], *value = value_for(key);
        cr_assert_not_null(value, "key '%s' has no test value", key);
        Config c;
        config_defaults(&c);
        char err[ERRLEN] = "";
        cr_assert_eq(config_set(&c, key, value, err, sizeof err), 0, "%s=%s rejected: %s", key, value, err);
        // The value shows up in the printed listing exactly as given.
        char want[512], got[512];
        snprintf(want, sizeof want, "%s=%s", key, value);
        cr_assert(printed_line(&c, key, got, sizeof got), "config_print has no line for '%s'", key);
        cr_assert_str_eq(got, want, "after config_set(%s, %s)", key, value);
        // Each value on its own leaves a valid config (bf16 needs device=cuda).
        if (!strcmp(key, "precision")) cr_assert_eq(config_set(&c, "device", "cuda", err, sizeof err), 0);
        cr_assert_eq(config_finalize(&c, err, sizeof err), 0, "%s=%s then finalize rejected: %s", key, value, err);
    }
}

// One table is the single source of the keys (issue 11, case 15): every key
// is exactly one row `X(key, ...)` of CONFIG_TABLE in core/config.c, and its
// name appears nowhere else there as a string literal (no second list, setter
// or getter that could be left behind when a key is added).
static int count_in(const char *text, const char *needle) {
    int n = 0;
    for (const char *p = strstr(text, needle); p; p = strstr(p + 1, needle)) n++;
    return n;
}

Test(config, every_key_is_one_row_of_one_table) {
    FILE *f = fopen("core/config.c", "r");
    cr_assert_not_null(f, "run from the repository root");
    static char text[1 << 18];
    size_t n = fread(text, 1, sizeof text - 1, f);
    fclose(f);
    text[n] = '\0';
    for (int i = 0; CONFIG_KEYS[i]; i++) {
        char row[128], literal[128];
        snprintf(row, sizeof row, "X(%s,", CONFIG_KEYS[i]);
        snprintf(literal, sizeof literal, "\"%s\"", CONFIG_KEYS[i]);
        cr_assert_eq(count_in(text, row), 1, "key %s: %d rows '%s' in core/config.c, expected 1", CONFIG_KEYS[i],
                     count_in(text, row), row);
        cr_assert_eq(count_in(text, literal), 0, "key %s is spelled out as %s in core/config.c %d time(s) outside the table",
                     CONFIG_KEYS[i], literal, count_in(text, literal));
    }
}

// Every key says what it means (issue 25): the description column of
// CONFIG_TABLE is what docs/configuration.md and `reformer help config` show,
// so a key added with an empty description (or a placeholder shorter than a
// few words) fails here.
Test(config, every_key_has_a_description) {
    for (int i = 0; CONFIG_KEYS[i]; i++) {
        const char *doc = config_key_doc(CONFIG_KEYS[i]);
        cr_assert_not_null(doc, "key %s has no description", CONFIG_KEYS[i]);
        cr_assert_geq(strlen(doc), 12, "key %s: description '%s' is too short to say what it means (CONFIG_TABLE in core/config.c)",
                      CONFIG_KEYS[i], doc);
        cr_assert_null(strchr(doc, '\n'), "key %s: a description is one line (it is a Markdown table cell)", CONFIG_KEYS[i]);
    }
    cr_assert_null(config_key_doc("no_such_key"));
}

// config_defaults is the table's default column: printing the defaults and
// reading every line back into a zeroed config gives the defaults again.
Test(config, defaults_are_the_printed_defaults) {
    Config d, r;
    config_defaults(&d);
    config_defaults(&r);
    char err[ERRLEN], value[1100];
    for (int i = 0; CONFIG_KEYS[i]; i++) {
        cr_assert_eq(config_get(&d, CONFIG_KEYS[i], value, sizeof value), 0);
        if (!strcmp(CONFIG_KEYS[i], "axial_shape") || !strcmp(CONFIG_KEYS[i], "axial_dims")) continue;  // auto: 0,0
        cr_assert_eq(config_set(&r, CONFIG_KEYS[i], value, err, sizeof err), 0, "default %s=%s: %s", CONFIG_KEYS[i], value, err);
    }
    cr_assert_eq(memcmp(&d, &r, sizeof d), 0, "a default does not read back to itself");
}

Test(config, set_pair_matches_set) {
    Config a, b;
    config_defaults(&a);
    config_defaults(&b);
    char err[ERRLEN];
    for (size_t i = 0; i < N_KEY_VALUES; i++) {
        char pair[512];
        snprintf(pair, sizeof pair, "%s=%s", KEY_VALUES[i].key, KEY_VALUES[i].value);
        cr_assert_eq(config_set_pair(&a, pair, err, sizeof err), 0, "%s: %s", pair, err);
        cr_assert_eq(config_set(&b, KEY_VALUES[i].key, KEY_VALUES[i].value, err, sizeof err), 0, "%s", err);
    }
    cr_assert_eq(memcmp(&a, &b, sizeof a), 0);
}

Test(config, set_pair_value_may_contain_equals) {
    Config c;
    config_defaults(&c);
    char err[ERRLEN];
    cr_assert_eq(config_set_pair(&c, "out_dir=runs/a=b", err, sizeof err), 0, "%s", err);
    cr_assert_str_eq(c.out_dir, "runs/a=b");
}

Test(config, set_pair_without_equals_is_rejected) {
    Config c;
    config_defaults(&c);
    char err[ERRLEN] = "";
    cr_assert_eq(config_set_pair(&c, "d_model", err, sizeof err), -1);
    assert_one_line_naming(err, "d_model", "d_model");
    cr_assert_eq(config_set_pair(&c, "=5", err, sizeof err), -1);
}

Test(config, printed_listing_reads_back) {
    // Every line of config_print is a valid key=value, and feeding the listing
    // of a finalized config back in reproduces it.
    Config a;
    EXPECT_OK(&a, "d_model=64", "n_heads=2", "seq_len=256", "attn_layers=local,lsh,lsh", "n_layers=5",
              "schedule=constant", "seed=12345678901234", "ff_activation=relu");
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    config_print(&a, f);
    fclose(f);
    Config b;
    config_defaults(&b);
    char err[ERRLEN];
    int lines = 0;
    for (char *save = NULL, *tok = strtok_r(buf, "\n", &save); tok; tok = strtok_r(NULL, "\n", &save)) {
        cr_assert_eq(config_set_pair(&b, tok, err, sizeof err), 0, "printed line '%s' rejected: %s", tok, err);
        lines++;
    }
    free(buf);
    int n_keys = 0;
    while (CONFIG_KEYS[n_keys]) n_keys++;
    cr_assert_eq(lines, n_keys, "config_print wrote %d lines for %d keys", lines, n_keys);
    cr_assert_eq(config_finalize(&b, err, sizeof err), 0, "%s", err);
    cr_assert_eq(b.d_model, 64);
    cr_assert_eq(b.seed, 12345678901234ull);
    cr_assert_eq(b.n_buckets, a.n_buckets);
    cr_assert_eq(memcmp(b.layer_kind, a.layer_kind, sizeof a.layer_kind), 0);
    cr_assert_eq(memcmp(b.axial_shape, a.axial_shape, sizeof a.axial_shape), 0);
    cr_assert_eq(memcmp(b.axial_dims, a.axial_dims, sizeof a.axial_dims), 0);
}

// --------------------------------------------------------------- bad configs

Test(config_bad, odd_n_buckets) {
    EXPECT_BAD("n_buckets", NULL, "n_buckets=7");
    EXPECT_BAD("n_buckets", NULL, "n_buckets=1");
}

// Factor lists: every factor even and >= 2, at most LSH_MAX_FACTORS of
// them, and a product that fits the 16-bit bucket ids.
Test(config_bad, bad_bucket_factors) {
    const char *bad[] = {"n_buckets=4,3", "n_buckets=1,8", "n_buckets=0,8", "n_buckets=2,2,2,2,2",
                         "n_buckets=512,256", "n_buckets=8,", "n_buckets=8,x", "n_buckets=,8"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) EXPECT_BAD("n_buckets", NULL, bad[i]);
}

Test(config_bad, seq_len_not_multiple_of_lsh_chunk) {
    EXPECT_BAD("lsh_chunk", "seq_len", "seq_len=96", "lsh_chunk=64", "local_chunk=32");
    EXPECT_BAD("lsh_chunk", "seq_len", "seq_len=100", "lsh_chunk=64");  // an explicit chunk is kept
}

Test(config_bad, seq_len_not_multiple_of_local_chunk) {
    EXPECT_BAD("local_chunk", "seq_len", "seq_len=96", "lsh_chunk=32", "local_chunk=64");
    EXPECT_BAD("local_chunk", "seq_len", "attn_layers=local", "seq_len=96", "local_chunk=64");
}

Test(config_bad, seq_len_not_axial_product) {
    EXPECT_BAD("axial_shape", "seq_len", "axial_shape=8,8");                // 64 != 512
    EXPECT_BAD("axial_shape", "seq_len", "seq_len=1024", "axial_shape=16,32");
    EXPECT_BAD("axial_shape", "seq_len", "axial_shape=4,4,4");              // 64 != 512
}

Test(config_bad, axial_dims_not_summing_to_d_model) {
    EXPECT_BAD("axial_dims", "d_model", "axial_dims=10,10");
    EXPECT_BAD("axial_dims", "d_model", "d_model=64", "n_heads=2", "axial_dims=64,64");
}

Test(config_bad, axial_entry_counts_disagree) {
    EXPECT_BAD("axial_dims", NULL, "axial_shape=8,8,8", "axial_dims=64,64");
    EXPECT_BAD("axial_shape", NULL, "axial_dims=32,32,64");  // three axes need an explicit shape
}

Test(config_bad, sp_not_dividing_heads_or_length) {
    EXPECT_BAD("sp", "n_heads", "n_heads=4", "sp=3", "seq_len=384", "sp_attention=heads");
    EXPECT_BAD("sp", "seq_len", "n_heads=4", "sp=3");
    EXPECT_BAD("sp", "seq_len", "n_heads=4", "sp=4", "seq_len=6", "axial_shape=2,3");
    EXPECT_BAD("sp", NULL, "sp=0");
    EXPECT_BAD("sp_attention", NULL, "sp_attention=rows");
}

// Past the head count the sequence stays sharded, in chunk-aligned shards:
// a shard that is not whole chunks is one line naming sp and the chunk key.
Test(config_bad, sp_sequence_shards_not_chunk_aligned) {
    // 512 / 8 = 64 positions per rank, local chunks of 128.
    EXPECT_BAD("sp", "local_chunk", "n_heads=4", "sp=8", "local_chunk=128");
    // 1 round x 128 positions per rank, LSH chunks of 256.
    EXPECT_BAD("sp", "lsh_chunk", "n_heads=4", "sp=4", "sp_attention=sequence", "n_hashes=1", "lsh_chunk=256");
    // Not yet on the GPU: said before anything starts.
    EXPECT_BAD("sp", "device=cuda", "n_heads=4", "sp=8", "device=cuda");
    // One chunk of the whole sequence (full attention) cannot be sharded.
    EXPECT_BAD("sp", "sp_attention=heads", "n_heads=4", "sp=8", "attn=full");
}

Test(config, sp_attention_picks_a_path_per_kind) {
    Config c;
    // auto, sp dividing the heads: halo for local layers, Ulysses for LSH.
    EXPECT_OK(&c, "n_heads=4", "sp=2");
    cr_assert(c.sp_sequence[ATTN_LOCAL] && !c.sp_sequence[ATTN_LSH]);
    // auto past the heads: both sequence-sharded (2 rounds x 64 positions).
    EXPECT_OK(&c, "n_heads=4", "sp=8");
    cr_assert(c.sp_sequence[ATTN_LOCAL] && c.sp_sequence[ATTN_LSH]);
    // auto, local shards not whole chunks but sp dividing the heads: Ulysses.
    EXPECT_OK(&c, "n_heads=4", "sp=4", "local_chunk=256");
    cr_assert(!c.sp_sequence[ATTN_LOCAL] && !c.sp_sequence[ATTN_LSH]);
    EXPECT_OK(&c, "n_heads=4", "sp=2", "sp_attention=heads");
    cr_assert(!c.sp_sequence[ATTN_LOCAL] && !c.sp_sequence[ATTN_LSH]);
    EXPECT_OK(&c, "n_heads=4", "sp=2", "sp_attention=sequence");
    cr_assert(c.sp_sequence[ATTN_LOCAL] && c.sp_sequence[ATTN_LSH]);
    EXPECT_OK(&c, "n_heads=4");
    cr_assert(!c.sp_sequence[ATTN_LOCAL] && !c.sp_sequence[ATTN_LSH]);  // sp = 1: nothing sharded
}

Test(config_bad, n_heads_not_dividing_d_model) {
    EXPECT_BAD("n_heads", "d_model", "n_heads=3");
    EXPECT_BAD("n_heads", "d_model", "d_model=100", "n_heads=8", "axial_dims=50,50");
}

Test(config_bad, zero_and_negative_sizes) {
    EXPECT_BAD("d_model", NULL, "d_model=0");
    EXPECT_BAD("d_model", NULL, "d_model=-64");
    EXPECT_BAD("n_layers", NULL, "n_layers=-1");
    EXPECT_BAD("n_layers", NULL, "n_layers=0");
    EXPECT_BAD("batch", NULL, "batch=0");
    EXPECT_BAD("seq_len", NULL, "seq_len=0");
    EXPECT_BAD("seq_len", NULL, "seq_len=-512");
    EXPECT_BAD("n_heads", NULL, "n_heads=0");
    EXPECT_BAD("d_ff", NULL, "d_ff=0");
    EXPECT_BAD("lsh_chunk", NULL, "lsh_chunk=-1");  // 0 means automatic
    EXPECT_BAD("local_chunk", NULL, "local_chunk=-1");
    EXPECT_BAD("n_hashes", NULL, "n_hashes=0");
    EXPECT_BAD("axial_shape", NULL, "axial_shape=0,512");
    EXPECT_BAD("axial_dims", NULL, "axial_dims=-64,192");
    EXPECT_BAD("steps", NULL, "steps=-1");
    EXPECT_BAD("lr", NULL, "lr=-0.1");
}

Test(config_bad, out_of_range_values) {
    EXPECT_BAD("n_layers", NULL, "n_layers=100000");
    EXPECT_BAD("dropout", NULL, "dropout=1.5");
    EXPECT_BAD("d_model", NULL, "d_model=99999999999999999999");  // overflows long
    EXPECT_BAD("lr_min", "lr", "lr=0.001", "lr_min=0.01");
    EXPECT_BAD("dup_alphabet", "vocab_size", "data=dup", "dup_alphabet=300");
}

Test(config_bad, unknown_key) {
    EXPECT_BAD("no_such_key", NULL, "no_such_key=1");
    EXPECT_BAD("D_MODEL", NULL, "D_MODEL=64");  // keys are case-sensitive
    Config c;
    config_defaults(&c);
    char err[ERRLEN] = "";
    cr_assert_eq(config_set(&c, "dmodel", "64", err, sizeof err), -1);
    assert_one_line_naming(err, "dmodel", "config_set(dmodel)");
}

Test(config_bad, malformed_numbers) {
    EXPECT_BAD("d_model", NULL, "d_model=12abc");
    EXPECT_BAD("seq_len", NULL, "seq_len=");
    EXPECT_BAD("seq_len", NULL, "seq_len=5 12");
    EXPECT_BAD("n_layers", NULL, "n_layers=2.5");
    EXPECT_BAD("lr", NULL, "lr=1e-3x");
    EXPECT_BAD("lr", NULL, "lr=nan");
    EXPECT_BAD("dropout", NULL, "dropout=abc");
    EXPECT_BAD("seed", NULL, "seed=-1");
    EXPECT_BAD("seed", NULL, "seed=12abc");
    EXPECT_BAD("axial_shape", NULL, "axial_shape=16,x");
    EXPECT_BAD("axial_shape", NULL, "axial_shape=");
    EXPECT_BAD("axial_shape", NULL, "axial_shape=2,2,2,2,32");  // more than MAX_AXES
    EXPECT_BAD("reversible", NULL, "reversible=maybe");
}

Test(config_bad, bad_enum_values) {
    EXPECT_BAD("attn", NULL, "attn=foo");
    EXPECT_BAD("ff_activation", NULL, "ff_activation=tanh");
    EXPECT_BAD("attn_layers", NULL, "attn_layers=lsh,foo");
    EXPECT_BAD("attn_layers", NULL, "attn_layers=,");
    EXPECT_BAD("attn_layers", NULL, "attn_layers=");
    EXPECT_BAD("schedule", NULL, "schedule=linear");
    EXPECT_BAD("device", NULL, "device=tpu");
    EXPECT_BAD("precision", NULL, "precision=fp16");
    EXPECT_BAD("data", NULL, "data=");
    EXPECT_BAD("out_dir", NULL, "out_dir=");
}

// The CPU backend is the fp32 reference and does not emulate bf16.
// lsh_form=strict runs on the CPU, unsharded, with Ulysses or with the
// sequence-sharded sort; the GPU refuses it by name.
Test(config, strict_lsh_is_cpu_only) {
    Config c;
    config_defaults(&c);
    cr_assert_eq(c.lsh_strict, 0, "the standard form is the default");
    EXPECT_OK(&c, "lsh_form=strict");
    EXPECT_OK(&c, "lsh_form=strict", "n_heads=4", "sp=2");
    EXPECT_OK(&c, "lsh_form=strict", "n_heads=4", "sp=8", "seq_len=1024");
    EXPECT_OK(&c, "lsh_form=strict", "attn_layers=local", "device=cuda");  // no LSH layer
    EXPECT_BAD("lsh_form", "device", "lsh_form=strict", "device=cuda");
    EXPECT_BAD("lsh_form", NULL, "lsh_form=causal");
}

Test(config, precision_is_fp32_by_default_and_bf16_and_tf32_need_cuda) {
    Config c;
    EXPECT_OK(&c, "d_model=64");
    cr_assert_eq(c.precision, PRECISION_FP32);
    EXPECT_OK(&c, "device=cuda", "precision=bf16");
    cr_assert_eq(c.precision, PRECISION_BF16);
    EXPECT_BAD("precision", "device=cuda", "precision=bf16");
    EXPECT_BAD("precision", "device=cuda", "device=cuda", "precision=bf16", "device=cpu");
    EXPECT_OK(&c, "device=cuda", "precision=tf32");
    cr_assert_eq(c.precision, PRECISION_TF32);
    char v[16];
    cr_assert_eq(config_get(&c, "precision", v, sizeof v), 0);
    cr_assert_str_eq(v, "tf32");
    EXPECT_BAD("precision", "device=cuda", "precision=tf32");
    EXPECT_BAD("precision", NULL, "device=cuda", "precision=fp16");
    for (int k = 0; CONFIG_SHAPE_KEYS[k]; k++)
        cr_assert_str_neq(CONFIG_SHAPE_KEYS[k], "precision", "precision must not fix the model's shape");
}

Test(config_bad, data_keys) {
    EXPECT_BAD("data_format", NULL, "data_format=csv");
    EXPECT_BAD("data_format", NULL, "data_format=");
    EXPECT_BAD("split_fractions", NULL, "split_fractions=0.9,0.1");      // two shares
    EXPECT_BAD("split_fractions", NULL, "split_fractions=0.5,0.2,0.2");  // sums to 0.9
    EXPECT_BAD("split_fractions", NULL, "split_fractions=1.1,-0.05,-0.05");
    EXPECT_BAD("split_fractions", NULL, "split_fractions=0,0.5,0.5");    // nothing to train on
    EXPECT_BAD("split_fractions", NULL, "split_fractions=0.9,0.05,0.05,0");
    EXPECT_BAD("split_fractions", NULL, "split_fractions=0.9,,0.1");
    EXPECT_BAD("split_fractions", NULL, "split_fractions=nan,0.5,0.5");
    EXPECT_BAD("cross_docs", NULL, "cross_docs=2");
    EXPECT_BAD("eval_every", NULL, "eval_every=-1");
    EXPECT_BAD("eval_windows", NULL, "eval_windows=many");
    // An explicit dup format is the duplication task whatever `data` names.
    EXPECT_BAD("dup_alphabet", "vocab_size", "data_format=dup", "data=x.txt", "dup_alphabet=300");
    Config c;
    EXPECT_OK(&c, "split_fractions=1,0,0");
    cr_assert(c.split_fractions[0] == 1 && c.split_fractions[1] == 0 && c.split_fractions[2] == 0);
    EXPECT_OK(&c, "split_fractions=0.7,0.2,0.1");  // 0.7+0.2+0.1 is 0.9999999999999999 in doubles
    cr_assert(c.split_fractions[0] == 0.7 && c.split_fractions[2] == 0.1);
}

// Images (issue 24): image_shape is H,W,C or none; seq_len must be H*W*C;
// the axial positions are the image's axes unless axial_shape is given.
Test(config_bad, image_keys) {
    EXPECT_BAD("image_shape", NULL, "image_shape=8,8");      // not three numbers
    EXPECT_BAD("image_shape", NULL, "image_shape=8,8,5");    // 5 channels
    EXPECT_BAD("image_shape", NULL, "image_shape=8,0,3");
    EXPECT_BAD("seq_len", "image_shape", "image_shape=8,8,3");  // 192 != the default 512
    EXPECT_BAD("vocab_size", NULL, "image_shape=8,8,3", "seq_len=192", "vocab_size=100");
    EXPECT_BAD("image_fit", NULL, "image_fit=stretch");
    Config c;
    EXPECT_OK(&c, "image_shape=8,8,3", "seq_len=192", "d_model=48");
    cr_assert_eq(c.n_axes, 3);
    cr_assert(c.axial_shape[0] == 8 && c.axial_shape[1] == 8 && c.axial_shape[2] == 3);
    cr_assert(c.axial_dims[0] == 16 && c.axial_dims[1] == 16 && c.axial_dims[2] == 16);
    char v[64];
    cr_assert_eq(config_get(&c, "image_shape", v, sizeof v), 0);
    cr_assert_str_eq(v, "8,8,3");
    EXPECT_OK(&c, "image_shape=8,8,3", "seq_len=192", "axial_shape=16,12");  // an explicit axial shape wins
    cr_assert(c.n_axes == 2 && c.axial_shape[0] == 16 && c.axial_shape[1] == 12);
    EXPECT_OK(&c, "image_shape=8,8,3", "image_shape=none");
    cr_assert(!config_is_image(&c));
    cr_assert_eq(config_get(&c, "image_shape", v, sizeof v), 0);
    cr_assert_str_eq(v, "none");
}

Test(config_bad, failed_set_leaves_field_unchanged) {
    Config c;
    config_defaults(&c);
    char err[ERRLEN];
    cr_assert_eq(config_set(&c, "d_model", "12abc", err, sizeof err), -1);
    cr_assert_eq(c.d_model, 128);
    cr_assert_eq(config_set(&c, "ff_activation", "tanh", err, sizeof err), -1);
    cr_assert_eq(c.ff_activation, ACT_GELU);
}

Test(config_bad, tiny_error_buffer_is_safe) {
    Config c;
    config_defaults(&c);
    char err[8];
    memset(err, 'x', sizeof err);
    cr_assert_eq(config_set(&c, "no_such_key", "1", err, sizeof err), -1);
    cr_assert(memchr(err, '\0', sizeof err) != NULL, "error message not NUL-terminated in a small buffer");
}

// ---------------------------------------------------------- auto-derivation

Test(config_derive, d_head_from_heads) {
    Config c;
    EXPECT_OK(&c, "d_model=96", "n_heads=3", "axial_dims=48,48");
    cr_assert_eq(c.d_head, 32);
    // An explicit d_head wins and lifts the divisibility requirement.
    EXPECT_OK(&c, "d_model=100", "n_heads=3", "d_head=40", "axial_dims=50,50");
    cr_assert_eq(c.d_head, 40);
}

// Largest divisor of n not above sqrt(n), computed independently of config.c.
static int ref_near_square(int n) {
    int best = 1;
    for (int f = 1; f <= n; f++)
        if (n % f == 0 && (long)f * f <= n) best = f;
    return best;
}

Test(config_derive, axial_shape_auto_for_many_lengths) {
    static const int lengths[] = {1, 2, 3, 7, 13, 64, 97, 100, 128, 360, 509, 512, 1000, 1024, 4093, 4096, 65536, 65537,
                                  1 << 20};
    for (size_t i = 0; i < sizeof lengths / sizeof lengths[0]; i++) {
        int n = lengths[i];
        char sl[32], lc[32], oc[32];
        snprintf(sl, sizeof sl, "seq_len=%d", n);
        snprintf(lc, sizeof lc, "lsh_chunk=%d", n);  // one chunk: any length is allowed
        snprintf(oc, sizeof oc, "local_chunk=%d", n);
        Config c;
        EXPECT_OK(&c, sl, lc, oc);
        cr_assert_eq(c.n_axes, 2, "seq_len=%d", n);
        cr_assert(c.axial_shape[0] >= 1 && c.axial_shape[1] >= 1, "seq_len=%d: shape %dx%d", n, c.axial_shape[0],
                  c.axial_shape[1]);
        cr_assert_eq((long)c.axial_shape[0] * c.axial_shape[1], n, "seq_len=%d: shape %dx%d", n, c.axial_shape[0],
                     c.axial_shape[1]);
        cr_assert(c.axial_shape[0] <= c.axial_shape[1], "seq_len=%d: shape %dx%d", n, c.axial_shape[0],
                  c.axial_shape[1]);
        cr_assert_eq(c.axial_shape[0], ref_near_square(n), "seq_len=%d: first axis %d is not the near-square divisor %d",
                     n, c.axial_shape[0], ref_near_square(n));
    }
    Config c;
    EXPECT_OK(&c, NULL);
    cr_assert_eq(c.axial_shape[0], 16);  // default seq_len=512
    cr_assert_eq(c.axial_shape[1], 32);
}

// Unset chunk lengths become the largest divisor of seq_len not above 64, so
// `bench --set seq_len=N --set axial_shape=A,B` works for any N = A*B.
Test(config_derive, chunks_auto_for_any_length) {
    const int lengths[][3] = {{1000, 40, 25}, {1009, 1009, 1}, {4096, 64, 64}, {100, 10, 10}, {96, 8, 12}, {7, 7, 1}};
    const int expect_chunk[] = {50, 1, 64, 50, 48, 7};
    for (size_t i = 0; i < sizeof lengths / sizeof lengths[0]; i++) {
        char sl[32], ax[32];
        snprintf(sl, sizeof sl, "seq_len=%d", lengths[i][0]);
        snprintf(ax, sizeof ax, "axial_shape=%d,%d", lengths[i][1], lengths[i][2]);
        Config c;
        EXPECT_OK(&c, sl, ax);
        cr_expect_eq(c.lsh_chunk, expect_chunk[i], "%s: lsh_chunk %d", sl, c.lsh_chunk);
        cr_expect_eq(c.local_chunk, expect_chunk[i], "%s: local_chunk %d", sl, c.local_chunk);
        cr_expect_eq(c.seq_len % c.lsh_chunk, 0);
    }
}

Test(config_derive, axial_dims_auto_split) {
    Config c;
    EXPECT_OK(&c, "d_model=129", "n_heads=3");
    cr_assert_eq(c.axial_dims[0] + c.axial_dims[1], 129);
    cr_assert(c.axial_dims[0] > 0 && c.axial_dims[1] > 0);
    EXPECT_OK(&c, "axial_shape=8,8,8", "seq_len=512", "d_model=96", "n_heads=2");
    cr_assert_eq(c.n_axes, 3);
    cr_assert_eq(c.axial_dims[0] + c.axial_dims[1] + c.axial_dims[2], 96);
    EXPECT_OK(&c, "axial_shape=8,64", "axial_dims=32,96");
    cr_assert_eq(c.axial_shape[0], 8);
    cr_assert_eq(c.axial_shape[1], 64);
    cr_assert_eq(c.axial_dims[0], 32);
    cr_assert_eq(c.axial_dims[1], 96);
}

static int ref_auto_buckets(int seq_len, int chunk) {
    // Largest power of two <= 2 * seq_len / chunk, and at least 2.
    int nb = 2;
    while ((long)nb * 2 * chunk <= 2L * seq_len) nb *= 2;
    return nb;
}

Test(config_derive, n_buckets_auto_power_of_two) {
    static const int cases[][3] = {
        // seq_len, lsh_chunk, expected
        {512, 64, 16}, {1024, 64, 32}, {128, 32, 8}, {192, 64, 4}, {64, 64, 2}, {4096, 32, 256},
        {96, 32, 4},   {320, 64, 8},   {32, 64, 2},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        int L = cases[i][0], m = cases[i][1], want = cases[i][2];
        char sl[32], lc[32], oc[32];
        snprintf(sl, sizeof sl, "seq_len=%d", L);
        snprintf(lc, sizeof lc, "lsh_chunk=%d", m);
        snprintf(oc, sizeof oc, "local_chunk=%d", m);
        Config c;
        EXPECT_OK(&c, sl, lc, oc);
        cr_assert_eq(want, ref_auto_buckets(L, m), "table entry L=%d m=%d", L, m);
        cr_assert_eq(c.n_buckets, want, "seq_len=%d lsh_chunk=%d: n_buckets=%d, expected %d", L, m, c.n_buckets, want);
        cr_assert_eq(c.n_buckets & (c.n_buckets - 1), 0, "not a power of two: %d", c.n_buckets);
        cr_assert(c.n_buckets == 2 || c.n_buckets <= 2 * L / m);
    }
    // An explicit even count is kept as given.
    Config c;
    EXPECT_OK(&c, "n_buckets=6");
    cr_assert_eq(c.n_buckets, 6);
}

// The automatic count is transformers' _set_num_buckets with
// max_position_embeddings = seq_len: past 2 * max(sqrt(L/m), m) buckets, two
// powers of two (expected values worked out by hand from that formula).
Test(config_derive, n_buckets_auto_factorised_as_transformers) {
    static const int cases[][5] = {
        // seq_len, lsh_chunk, product, factor 1, factor 2 (0: unfactorised)
        {512, 64, 16, 16, 0},   {4096, 64, 128, 128, 0},    {8192, 64, 256, 16, 16},  {16384, 64, 512, 16, 32},
        {65536, 64, 2048, 32, 64}, {64, 4, 32, 4, 8},       {4096, 32, 256, 16, 16},  {1048576, 64, 32768, 128, 256},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char sl[32], lc[32], oc[32], ax[48];
        snprintf(sl, sizeof sl, "seq_len=%d", cases[i][0]);
        snprintf(lc, sizeof lc, "lsh_chunk=%d", cases[i][1]);
        snprintf(oc, sizeof oc, "local_chunk=%d", cases[i][1]);
        snprintf(ax, sizeof ax, "axial_shape=%d,%d", cases[i][1], cases[i][0] / cases[i][1]);
        Config c;
        EXPECT_OK(&c, sl, lc, oc, ax);
        const int nf = cases[i][4] ? 2 : 1;
        cr_assert_eq(c.n_buckets, cases[i][2], "seq_len=%d: %d buckets", cases[i][0], c.n_buckets);
        cr_assert_eq(c.bucket_factors.n, nf, "seq_len=%d: %d factors", cases[i][0], c.bucket_factors.n);
        cr_assert_eq(c.bucket_factors.f[0], cases[i][3]);
        if (nf == 2) cr_assert_eq(c.bucket_factors.f[1], cases[i][4]);
    }
}

// n_buckets=f1,f2,...: the product, the factors in order, and the text
// reads back (config_get) to the same config; a count alone is one factor.
Test(config_derive, n_buckets_factor_list) {
    Config c, d;
    EXPECT_OK(&c, "n_buckets=64,128");
    cr_assert_eq(c.n_buckets, 8192);
    cr_assert(c.bucket_factors.n == 2 && c.bucket_factors.f[0] == 64 && c.bucket_factors.f[1] == 128);
    char text[64], err[ERRLEN];
    config_get(&c, "n_buckets", text, sizeof text);
    cr_assert_str_eq(text, "64,128");
    config_defaults(&d);
    cr_assert_eq(config_set(&d, "n_buckets", text, err, sizeof err), 0, "%s", err);
    cr_assert_eq(config_finalize(&d, err, sizeof err), 0, "%s", err);
    cr_assert_eq(memcmp(&c, &d, sizeof c), 0);
    EXPECT_OK(&c, "n_buckets=4,2,6");
    cr_assert(c.n_buckets == 48 && c.bucket_factors.n == 3 && c.bucket_factors.f[2] == 6);
    EXPECT_OK(&c, "n_buckets=64");
    cr_assert(c.n_buckets == 64 && c.bucket_factors.n == 1 && c.bucket_factors.f[0] == 64);
    config_get(&c, "n_buckets", text, sizeof text);
    cr_assert_str_eq(text, "64");
    // Setting the count directly (as code and tests may) means one factor.
    EXPECT_OK(&c, "n_buckets=4,4");
    c.n_buckets = 8;
    cr_assert_eq(config_finalize(&c, err, sizeof err), 0, "%s", err);
    cr_assert(c.bucket_factors.n == 1 && c.bucket_factors.f[0] == 8);
}

Test(config_derive, attn_layers_pattern_repeats) {
    Config c;
    EXPECT_OK(&c, "n_layers=7", "attn_layers=local,local,lsh");
    static const AttnKind want7[] = {ATTN_LOCAL, ATTN_LOCAL, ATTN_LSH, ATTN_LOCAL, ATTN_LOCAL, ATTN_LSH, ATTN_LOCAL};
    for (int l = 0; l < 7; l++) cr_assert_eq(c.layer_kind[l], want7[l], "layer %d", l);
    cr_assert_eq(config_count_lsh_layers(&c), 2);

    EXPECT_OK(&c, "n_layers=3", "attn_layers=lsh");
    for (int l = 0; l < 3; l++) cr_assert_eq(c.layer_kind[l], ATTN_LSH, "layer %d", l);
    cr_assert_eq(config_count_lsh_layers(&c), 3);

    // A pattern longer than the stack is cut.
    EXPECT_OK(&c, "n_layers=2", "attn_layers=lsh,local,lsh,lsh");
    cr_assert_eq(c.layer_kind[0], ATTN_LSH);
    cr_assert_eq(c.layer_kind[1], ATTN_LOCAL);
    cr_assert_eq(config_count_lsh_layers(&c), 1);

    EXPECT_OK(&c, NULL);  // default: local,lsh over 4 layers
    cr_assert_eq(config_count_lsh_layers(&c), 2);
    cr_assert_eq(c.layer_kind[0], ATTN_LOCAL);
    cr_assert_eq(c.layer_kind[3], ATTN_LSH);
}

Test(config_derive, layer_chunk) {
    Config c;
    EXPECT_OK(&c, "seq_len=256", "lsh_chunk=32", "local_chunk=64", "n_layers=2", "attn_layers=lsh,local");
    cr_assert_eq(config_layer_chunk(&c, 0), 32);
    cr_assert_eq(config_layer_chunk(&c, 1), 64);
    // A chunk longer than the sequence is clamped to it.
    EXPECT_OK(&c, "seq_len=48", "lsh_chunk=64", "local_chunk=64");
    cr_assert_eq(config_layer_chunk(&c, 0), 48);
    // Full attention: one chunk of the whole sequence, and no multiple rule.
    EXPECT_OK(&c, "attn=full", "seq_len=100", "axial_shape=10,10");
    cr_assert_eq(config_layer_chunk(&c, 0), 100);
    cr_assert_eq(config_layer_chunk(&c, 1), 100);
}

// --------------------------------------------------------------------- INI

static char tmp_dir[256];

static void make_tmp_dir(void) {
    snprintf(tmp_dir, sizeof tmp_dir, "%s/reformer-test-config.XXXXXX", getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
    cr_assert_not_null(mkdtemp(tmp_dir), "mkdtemp failed");
}

static void remove_tmp_dir(void) {
    char cmd[512];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmp_dir);
    if (system(cmd) != 0) fprintf(stderr, "warning: could not remove %s\n", tmp_dir);
}

static void write_file(const char *path, const char *text) {
    FILE *f = fopen(path, "w");
    cr_assert_not_null(f, "cannot write %s", path);
    fputs(text, f);
    fclose(f);
}

TestSuite(config_ini, .init = make_tmp_dir, .fini = remove_tmp_dir);

Test(config_ini, loads_sections_comments_and_keys) {
    char path[512];
    snprintf(path, sizeof path, "%s/good.ini", tmp_dir);
    write_file(path, "; a comment\n"
                     "# another comment\n"
                     "[model]\n"
                     "d_model = 64\n"
                     "n_heads=2\n"
                     "attn_layers = lsh,local,local\n"
                     "n_layers = 3   ; inline comment\n"
                     "\n"
                     "[training]\n"
                     "seq_len = 256\n"
                     "lr = 0.0005\n"
                     "schedule = constant\n"
                     "data = dup\n"
                     "out_dir = runs/ini test\n");
    Config c;
    config_defaults(&c);
    char err[ERRLEN] = "";
    cr_assert_eq(config_load_file(&c, path, err, sizeof err), 0, "load failed: %s", err);
    cr_assert_eq(config_finalize(&c, err, sizeof err), 0, "finalize failed: %s", err);
    cr_assert_eq(c.d_model, 64);
    cr_assert_eq(c.n_heads, 2);
    cr_assert_eq(c.d_head, 32);
    cr_assert_eq(c.n_layers, 3);
    cr_assert_str_eq(c.attn_layers, "lsh,local,local");
    cr_assert_eq(c.layer_kind[0], ATTN_LSH);
    cr_assert_eq(c.layer_kind[2], ATTN_LOCAL);
    cr_assert_eq(c.seq_len, 256);
    cr_assert_float_eq(c.lr, 0.0005, 1e-15);
    cr_assert_eq(c.schedule, SCHED_CONSTANT);
    cr_assert_str_eq(c.data, "dup");
    cr_assert_str_eq(c.out_dir, "runs/ini test");
    // Untouched keys keep their defaults.
    cr_assert_eq(c.batch, 4);
    cr_assert_eq(c.lsh_chunk, 64);
}

Test(config_ini, later_keys_and_set_override) {
    char path[512];
    snprintf(path, sizeof path, "%s/override.ini", tmp_dir);
    write_file(path, "d_model = 64\nn_heads = 2\nd_model = 32\n");
    Config c;
    config_defaults(&c);
    char err[ERRLEN] = "";
    cr_assert_eq(config_load_file(&c, path, err, sizeof err), 0, "%s", err);
    cr_assert_eq(c.d_model, 32);
    cr_assert_eq(config_set_pair(&c, "d_model=48", err, sizeof err), 0, "%s", err);
    cr_assert_eq(config_finalize(&c, err, sizeof err), 0, "%s", err);
    cr_assert_eq(c.d_model, 48);
    cr_assert_eq(c.d_head, 24);
}

Test(config_ini, empty_file_is_fine) {
    char path[512];
    snprintf(path, sizeof path, "%s/empty.ini", tmp_dir);
    write_file(path, "");
    Config c, d;
    config_defaults(&c);
    config_defaults(&d);
    char err[ERRLEN] = "";
    cr_assert_eq(config_load_file(&c, path, err, sizeof err), 0, "%s", err);
    cr_assert_eq(memcmp(&c, &d, sizeof c), 0);
}

// Loading `contents` as file `name` fails with one line that holds
// "<path>:<line>" and, when key is given, names the key; returns the message.
static const char *expect_ini_error(const char *name, const char *contents, int line, const char *key) {
    static char path[512], want[600], err[ERRLEN];
    snprintf(path, sizeof path, "%s/%s", tmp_dir, name);
    write_file(path, contents);
    Config c;
    config_defaults(&c);
    err[0] = '\0';
    cr_assert_eq(config_load_file(&c, path, err, sizeof err), -1, "%s was accepted", name);
    snprintf(want, sizeof want, "%s:%d", path, line);
    cr_assert(strstr(err, want) != NULL, "error '%s' does not contain '%s'", err, want);
    if (key) cr_assert(strstr(err, key) != NULL, "error '%s' does not name the key %s", err, key);
    cr_assert(strchr(err, '\n') == NULL, "error is not one line: '%s'", err);
    return err;
}

Test(config_ini, malformed_line_gives_file_and_line) {
    expect_ini_error("malformed.ini", "[model]\nd_model = 64\nthis line has no equals sign\nn_heads = 2\n", 3, NULL);
}

Test(config_ini, unterminated_section_gives_file_and_line) {
    expect_ini_error("section.ini", "d_model = 64\n\n[model\n", 3, NULL);
}

Test(config_ini, bad_value_gives_key_and_line) {
    expect_ini_error("badvalue.ini", "[model]\nd_model = 64\n\nn_heads = two\nseq_len = 256\n", 4, "n_heads");
}

Test(config_ini, unknown_key_gives_key_and_line) {
    expect_ini_error("unknown.ini", "d_model = 64\nn_head = 2\n", 2, "n_head");
}

Test(config_ini, first_error_wins_with_its_own_message) {
    // A malformed line before a bad value: the error must be about the
    // malformed line (its number and its problem), not the later value.
    const char *err = expect_ini_error("two_errors.ini", "d_model = 64\nnot a key value line\nn_heads = two\n", 2, NULL);
    cr_assert(strstr(err, "n_heads") == NULL, "line 2's error carries line 3's message: '%s'", err);
    // And the other way round: a bad value before a malformed line.
    expect_ini_error("two_errors.ini", "d_model = 64\nn_heads = two\nnot a key value line\n", 2, "n_heads");
}

Test(config_ini, missing_file_names_the_path) {
    char path[512];
    snprintf(path, sizeof path, "%s/does-not-exist.ini", tmp_dir);
    Config c;
    config_defaults(&c);
    char err[ERRLEN] = "";
    cr_assert_eq(config_load_file(&c, path, err, sizeof err), -1);
    cr_assert(strstr(err, path) != NULL, "error '%s' does not name the file", err);
    cr_assert(strchr(err, '\n') == NULL);
}

// A FIFO given as --config is refused at once rather than waited on.
Test(config_ini, fifo_is_refused_without_blocking, .timeout = 10) {
    char path[512];
    snprintf(path, sizeof path, "%s/pipe.ini", tmp_dir);
    cr_assert_eq(mkfifo(path, 0600), 0);
    Config c;
    config_defaults(&c);
    char err[ERRLEN] = "";
    cr_assert_eq(config_load_file(&c, path, err, sizeof err), -1);
    cr_assert(strstr(err, path) && strstr(err, "not a regular file"), "%s", err);
}

Test(config_ini, crlf_line_endings) {
    char path[512];
    snprintf(path, sizeof path, "%s/crlf.ini", tmp_dir);
    write_file(path, "[model]\r\nd_model = 64\r\nn_heads = 2\r\n");
    Config c;
    config_defaults(&c);
    char err[ERRLEN] = "";
    cr_assert_eq(config_load_file(&c, path, err, sizeof err), 0, "%s", err);
    cr_assert_eq(c.d_model, 64);
    cr_assert_eq(c.n_heads, 2);
}

// Issue 11, case 14: libinih cut lines at 200 bytes, so a long `data =` path
// that --set takes was refused from a file. Lines have no length limit now;
// only the key's own limit applies, reported with file, line and key.
Test(config_ini, long_lines_load_whole) {
    char path[512], want[600], text[4096], value[2048];
    snprintf(path, sizeof path, "%s/long.ini", tmp_dir);
    memset(value, 'a', 900);
    value[900] = '\0';
    snprintf(text, sizeof text, "d_model = 64\ndata = /tmp/%s\nn_heads = 2\n", value);
    write_file(path, text);
    Config c;
    config_defaults(&c);
    char err[ERRLEN] = "";
    cr_assert_eq(config_load_file(&c, path, err, sizeof err), 0, "a 905-character data path was refused: %s", err);
    cr_assert_eq(strlen(c.data), 905);
    cr_assert_eq(c.n_heads, 2, "the line after the long one was lost");

    // Past the key's own limit (data holds 1023 characters): file:line: key.
    memset(value, 'b', 1500);
    value[1500] = '\0';
    snprintf(text, sizeof text, "d_model = 64\ndata = /tmp/%s\n", value);
    write_file(path, text);
    config_defaults(&c);
    cr_assert_eq(config_load_file(&c, path, err, sizeof err), -1, "a 1505-character data path was accepted");
    snprintf(want, sizeof want, "%s:2: data:", path);
    cr_assert(strstr(err, want) != NULL, "error '%s' does not contain '%s'", err, want);
}

// Issue 11, case 14: `#` after a value is a comment, as the README says (it
// was part of the value), like `;`; a `#` inside a value is kept.
Test(config_ini, hash_after_a_value_is_a_comment) {
    char path[512];
    snprintf(path, sizeof path, "%s/hash.ini", tmp_dir);
    write_file(path, "n_layers = 3 # three blocks\n"
                     "lr = 0.0005\t# tab before the comment\n"
                     "data = runs/file#1.txt\n"
                     "  d_model = 64   ; indented, inline ;\n"
                     "  # an indented comment\n");
    Config c;
    config_defaults(&c);
    char err[ERRLEN] = "";
    cr_assert_eq(config_load_file(&c, path, err, sizeof err), 0, "%s", err);
    cr_assert_eq(c.n_layers, 3);
    cr_assert_float_eq(c.lr, 0.0005, 1e-15);
    cr_assert_str_eq(c.data, "runs/file#1.txt");
    cr_assert_eq(c.d_model, 64);
}

// Issue 11, case 14: a NUL byte cut the value silently and the error named no
// file or line; now it is an error at its line.
Test(config_ini, nul_byte_gives_file_and_line) {
    char path[512], want[600];
    snprintf(path, sizeof path, "%s/nul.ini", tmp_dir);
    FILE *f = fopen(path, "w");
    cr_assert_not_null(f);
    fwrite("d_model = 64\n\nn_heads = 2\0 junk\nseq_len = 256\n", 1, 46, f);
    fclose(f);
    Config c;
    config_defaults(&c);
    char err[ERRLEN] = "";
    cr_assert_eq(config_load_file(&c, path, err, sizeof err), -1, "a NUL byte was accepted");
    snprintf(want, sizeof want, "%s:3:", path);
    cr_assert(strstr(err, want) != NULL, "error '%s' does not contain '%s'", err, want);
    cr_assert(strstr(err, "NUL") != NULL, "error '%s' does not say NUL", err);
    cr_assert(strchr(err, '\n') == NULL);
}

// Issue 21, 2.11: axial_shape=0 was refused ("out of range") while every key
// whose 0 means automatic takes it. Now 0 gives the automatic shape, the same
// config as not setting the key (and so for axial_dims).
Test(config, axial_shape_and_dims_0_mean_automatic) {
    Config set, unset;
    char err[ERRLEN] = "", a[512], b[512];
    config_defaults(&unset);
    config_defaults(&set);
    cr_assert_eq(config_set(&set, "axial_shape", "8,16", err, sizeof err), 0, "%s", err);
    cr_assert_eq(config_set(&set, "axial_shape", "0", err, sizeof err), 0, "axial_shape=0 refused: %s", err);
    cr_assert_eq(config_set(&set, "axial_dims", "0", err, sizeof err), 0, "axial_dims=0 refused: %s", err);
    cr_assert_eq(config_finalize(&set, err, sizeof err), 0, "%s", err);
    cr_assert_eq(config_finalize(&unset, err, sizeof err), 0, "%s", err);
    for (int i = 0; CONFIG_KEYS[i]; i++) {
        config_get(&set, CONFIG_KEYS[i], a, sizeof a);
        config_get(&unset, CONFIG_KEYS[i], b, sizeof b);
        cr_assert_str_eq(a, b, "%s differs: %s with 0, %s unset", CONFIG_KEYS[i], a, b);
    }
}
