// `reformer help`: the commands (one table, which main dispatches through),
// each command's --help, every key with its default, and
// docs/configuration.md, generated from CONFIG_TABLE (core/config.c) so the
// page cannot drift from the keys (tests/test_cli.c compares them).
#include <stdio.h>
#include <string.h>

#include "cli.h"

// THE commands: what main dispatches, what `reformer help` lists and what
// `reformer COMMAND --help` prints (its arguments, one per line, and an
// example that runs after the README's `reformer train`).
static const CommandInfo COMMANDS[] = {
    {"train", cmd_train, "[--config FILE] [--set key=value ...] [--resume DIR|auto]",
     "Train a model: `steps` optimizer steps, checkpoints and metrics.h5 in `out_dir`.",
     "  --config FILE     an INI file of `key = value` lines (every key: reformer help config)\n"
     "  --set key=value   one config key (or just key=value); later arguments win\n"
     "  --resume DIR      continue the run in DIR from its newest valid checkpoint, with its\n"
     "                    config; --config/--set may change any key but the shape keys\n"
     "  --resume auto     resume the run in out_dir if it holds a checkpoint, else start it\n",
     "reformer train --set steps=10 --set eval_windows=4 --set out_dir=runs/short"},
    {"eval", cmd_eval, "--ckpt FILE [--data PATH] [--split validation|test] [--windows N] [--form train|decode] [--set key=value ...]",
     "Bits per byte of a checkpoint on a whole split (accuracy on the duplication task).",
     "  --ckpt FILE       the checkpoint; its config is the starting point\n"
     "  --data PATH       the data, when it is elsewhere than the checkpoint's `data`\n"
     "  --split S         validation (default) or test\n"
     "  --windows N       N windows spread evenly over the split (default: all)\n"
     "  --form F          train (default: the training forward) or decode (the decoder, one\n"
     "                    byte at a time: what the model predicts without seeing later bytes)\n"
     "  --set key=value   e.g. batch=N (windows per forward pass; not the result)\n",
     "reformer eval --ckpt runs/default/ckpt_00000580.h5 --split test --windows 8"},
    {"sample", cmd_sample,
     "--ckpt FILE --prompt TEXT --len N [--temperature T] [--top-k K] [--seed S] [--no-cache]\n"
     "       reformer sample --ckpt FILE --image IN.png --keep-rows K --out OUT.png [--n N] [--temperature T] [--top-k K] [--seed S]",
     "Generate text from a checkpoint (the prompt, then --len bytes, or tokens with a tokenizer, as they are\n"
     "drawn), or complete an image model's picture below its top rows.",
     "  --ckpt FILE       the checkpoint\n"
     "  --prompt TEXT     the text to continue (prompt + len must fit in seq_len)\n"
     "  --len N           bytes (tokens) to generate\n"
     "  --image IN.png    an image model: the picture whose top rows are kept\n"
     "  --keep-rows K     rows of IN.png kept as the prompt\n"
     "  --out OUT.png     the completions, side by side\n"
     "  --n N             completions to draw (default 1)\n"
     "  --temperature T   1 (default) samples the model's distribution; 0 is greedy\n"
     "  --top-k K         sample among the K most likely bytes (default 0: all)\n"
     "  --seed S          the draw's seed (default the run's); same seed, same text\n"
     "  --no-cache        recompute the whole prefix for every byte (the reference)\n",
     "reformer sample --ckpt runs/default/ckpt_00000580.h5 --prompt 'ROMEO:' --len 100"},
    {"bench", cmd_bench, "[--config FILE] [--set key=value ...] [--steps N] [--warmup N] [--json]",
     "Time training steps on random tokens; prints the model summary and one JSON line.",
     "  --config FILE, --set key=value   the model and run, as for train (data=random unless set)\n"
     "  --steps N         timed steps (default 3)\n"
     "  --warmup N        untimed steps before them (default 1)\n"
     "  --json            print only the JSON line\n",
     "reformer bench --set seq_len=1024 --set axial_shape=32,32 --warmup 0 --steps 1 --json"},
    {"plan", cmd_plan, "[--config FILE] [--set key=value ...] [--fit BYTES]",
     "Print the memory plan of a config (every buffer of a training step) without allocating it.",
     "  --config FILE, --set key=value   the model and run, as for train (device=cuda plans a GPU)\n"
     "  --fit BYTES       also print the longest seq_len that fits in BYTES (16G, 80GiB, 800M)\n",
     "reformer plan --set seq_len=65536 --set axial_shape=256,256 --fit 8G"},
    {"tokenize", cmd_tokenize, "--data PATH --vocab N --out FILE.model [--type unigram|bpe] [--max-sentences N] [--set key=value ...]",
     "Train a SentencePiece tokenizer on a dataset's train split, for `--set tokenizer=FILE.model`.",
     "  --data PATH       text, enwik8 or a PG19 directory (read as for train)\n"
     "  --vocab N         the vocabulary size (256 byte pieces and <unk> come on top of what it learns)\n"
     "  --out FILE.model  the SentencePiece model to write\n"
     "  --type T          unigram (default) or bpe\n"
     "  --max-sentences N at most N lines of the split, sampled\n"
     "  --set key=value   e.g. data_format or split_fractions, as for train\n",
     "reformer tokenize --data data/tinyshakespeare.txt --vocab 512 --max-sentences 2000 --out runs/shakespeare.model"},
    {"export-hf", cmd_export_hf, "--ckpt FILE --out DIR",
     "Write a checkpoint as a Hugging Face transformers model directory (needs make setup-hf).",
     "  --ckpt FILE       the checkpoint\n"
     "  --out DIR         the model directory to write (must not exist, or be empty)\n",
     "reformer export-hf --ckpt runs/default/ckpt_00000580.h5 --out hf/shakespeare"},
    {"import-hf", cmd_import_hf, "--model DIR --out FILE",
     "Write a transformers ReformerModelWithLMHead as a checkpoint at step 0 (needs make setup-hf).",
     "  --model DIR       a directory from_pretrained reads\n"
     "  --out FILE        the checkpoint to write; DIR/ (or an existing directory) writes\n"
     "                    DIR/ckpt_00000000.h5, which train --resume DIR fine-tunes\n",
     "reformer import-hf --model hf/shakespeare --out runs/ft/"},
    {"help", NULL, "[COMMAND | config [--markdown]]",
     "The usage and every key's default; a command's help; or what every key means.",
     "  COMMAND           the same as reformer COMMAND --help\n"
     "  config            every key, its default and its meaning\n"
     "  config --markdown the same as docs/configuration.md\n",
     "reformer help config"},
};
#define N_COMMANDS ((int)(sizeof COMMANDS / sizeof COMMANDS[0]))

const CommandInfo *find_command(const char *name) {
    for (int i = 0; i < N_COMMANDS; i++)
        if (!strcmp(COMMANDS[i].name, name)) return &COMMANDS[i];
    return NULL;
}

void command_names(char *buf, size_t cap) {
    buf[0] = '\0';
    for (int i = 0; i < N_COMMANDS; i++)
        snprintf(buf + strlen(buf), cap - strlen(buf), "%s%s", i ? ", " : "", COMMANDS[i].name);
}

void print_command_help(const CommandInfo *cmd) {
    printf("usage: reformer %s %s\n\n%s\n\n%s\nexample:\n  %s\n", cmd->name, cmd->synopsis, cmd->summary,
           cmd->arguments, cmd->example);
}

void print_help(void) {
    printf("usage:\n");
    for (int i = 0; i < N_COMMANDS; i++) printf("  reformer %s %s\n", COMMANDS[i].name, COMMANDS[i].synopsis);
    printf("\n"
           "reformer COMMAND --help prints a command's arguments and an example.\n"
           "Every config key can be set in an INI file (--config) and overridden with --set.\n"
           "--resume DIR continues the run in DIR from its newest checkpoint, with the\n"
           "checkpoint's config; --config/--set may then change any key but the shape keys.\n"
           "--resume auto resumes the run in out_dir if it holds a checkpoint, else starts it.\n"
           "eval and sample start from the config of the checkpoint given with --ckpt.\n"
           "`reformer help config` says what each key means.\n"
           "Keys and defaults:\n");
    Config c;
    config_defaults(&c);
    char err[256];
    if (config_finalize(&c, err, sizeof err) == 0) config_print(&c, stdout);
}

// A key's default as the docs show it: the value itself, or "*auto*: V" when
// the key is left to config_finalize (its raw default differs from the
// finalized one), V being what the defaults derive.
static void default_text(const Config *raw, const Config *fin, const char *key, int markdown, char *buf,
                         size_t cap) {
    char a[1100], b[1100];
    config_get(raw, key, a, sizeof a);
    config_get(fin, key, b, sizeof b);
    if (strcmp(a, b)) snprintf(buf, cap, markdown ? "*auto*: %s" : "auto: %s", b);
    else snprintf(buf, cap, "%s", b);
}

// The page docs/configuration.md, byte for byte: `reformer help config
// --markdown > docs/configuration.md` after changing a key.
static void print_config_markdown(const Config *raw, const Config *fin) {
    printf("<!-- Generated by `reformer help config --markdown` from CONFIG_TABLE in core/config.c;\n"
           "     edit the table, then regenerate this page (tests/test_cli.c checks they agree). -->\n"
           "# Configuration\n"
           "\n"
           "Every setting is a config key. A command starts from the defaults (or, for\n"
           "`eval`, `sample` and `train --resume`, from a checkpoint's config), then\n"
           "applies its arguments in order, the later one winning:\n"
           "\n"
           "- `--config FILE`: an INI file of `key = value` lines, of any length.\n"
           "  `[section]` headers are allowed and ignored (keys are flat); `;` and `#`\n"
           "  start comments, at the start of a line or after a blank following a value\n"
           "  (`n_layers = 6  # six blocks`; `data = a#b.txt` keeps its `#`). Any other\n"
           "  line, or a NUL byte, is an error naming the file and line.\n"
           "- `--set key=value`, or just `key=value`: one key.\n"
           "\n"
           "Examples:\n"
           "\n"
           "    # a smaller, faster model\n"
           "    ./build/reformer train --set d_model=64 --set n_heads=2 --set steps=20 --set out_dir=runs/small\n"
           "\n"
           "    # the same model, from a file (into runs/small-ini), one key overridden on the command line\n"
           "    cat > small.ini <<'INI'\n"
           "    [model]\n"
           "    d_model = 64\n"
           "    n_heads = 2\n"
           "    [training]\n"
           "    steps = 20\n"
           "    out_dir = runs/small-ini\n"
           "    INI\n"
           "    ./build/reformer train --config small.ini --set lr=0.001\n"
           "\n"
           "Any invalid setting stops the program before it does anything, with exit\n"
           "status 2 and one line on stderr that names the key, for example\n"
           "`reformer: error: n_buckets: 7 must be even and at least 2` or, from a file,\n"
           "`reformer: error: small.ini:3: n_heads: 'two' is not an integer`.\n"
           "\n"
           "## Keys\n"
           "\n"
           "Defaults as `reformer help` prints them. Values marked *auto* are derived when\n"
           "the key is left unset (or set to 0); the default shown is what the defaults\n"
           "derive. Every key is one row of one table, `CONFIG_TABLE` in `core/config.c`:\n"
           "its name, type, range or choices, default, whether it fixes the model's shape\n"
           "(a *shape* key: a checkpoint loads only into a model that agrees on all of\n"
           "them, and `train --resume` refuses to change them), and the description\n"
           "below; INI files, `--set`, `help`, checkpoints, this page and the tests all\n"
           "read it.\n"
           "\n"
           "| key | default | meaning |\n"
           "|---|---|---|\n");
    for (int i = 0; CONFIG_KEYS[i]; i++) {
        const char *key = CONFIG_KEYS[i];
        char def[1200];
        default_text(raw, fin, key, 1, def, sizeof def);
        printf("| `%s` | %s | ", key, def);
        if (config_key_is_shape(key)) printf("*shape.* ");
        for (const char *p = config_key_doc(key); *p; p++) {  // a | would end the cell
            if (*p == '|') putchar('\\');
            putchar(*p);
        }
        printf(" |\n");
    }
    printf("\n"
           "A run is reproducible: the same config and seed give bit-identical losses on\n"
           "the same machine and build.\n");
}

// `reformer help config [--markdown]`: every key, its default and meaning.
int cmd_help_config(int argc, char **argv) {
    int markdown = 0;
    for (int i = 0; i < argc; i++) {
        if (!strcmp(argv[i], "--markdown")) markdown = 1;
        else usage_error("help config: unknown argument '%s' (usage: reformer help config [--markdown])", argv[i]);
    }
    Config raw, fin;
    config_defaults(&raw);
    config_defaults(&fin);
    char err[256];
    if (config_finalize(&fin, err, sizeof err)) usage_error("%s", err);
    if (markdown) {
        print_config_markdown(&raw, &fin);
        return 0;
    }
    for (int i = 0; CONFIG_KEYS[i]; i++) {
        char def[1200];
        default_text(&raw, &fin, CONFIG_KEYS[i], 0, def, sizeof def);
        printf("%s = %s%s\n    %s\n", CONFIG_KEYS[i], def, config_key_is_shape(CONFIG_KEYS[i]) ? " (shape)" : "",
               config_key_doc(CONFIG_KEYS[i]));
    }
    return 0;
}
