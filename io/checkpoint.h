// Checkpoints: one HDF5 file per saved step, `<out_dir>/ckpt_<step>.h5` with
// the step zero-padded to 8 digits so names sort. Layout (README, "Checkpoints"):
//
//   first 512 bytes   HDF5 user block holding our seal: a short text header
//                     with the file's length and the CRC-32 of everything after
//                     it, written last, so truncation and bit rot are caught
//                     before HDF5 parses a byte (HDF5 ignores user blocks;
//                     h5py and h5dump read the file as usual)
//   / attributes      format_version (int), step (int), and every config key
//                     as a string in config_get's exact text
//   /params/...       one float32 dataset per tensor in its natural shape; the
//                     layout name "layers.3.attn.w_qk" is the path
//                     /params/layers/3/attn/w_qk
//   /optim/m/..., /optim/v/...  the AdamW moments, same paths and shapes
//   /state/step, /state/seed, /state/data_cursor   scalars (the data and every
//                     random draw are functions of (seed, step): the cursor is
//                     the step, stored so a reader need not know that)
//   /state/global_batch  sequences per step over all replicas (dp x batch);
//                     absent in files of older builds (then: the batch key)
//   /tokenizer/spiece_model  uint8 [n]: the SentencePiece .model file the run
//                     encoded its data with (io/tokenizer.h), when it had one:
//                     eval, sample and export-hf need nothing else
//
// Writing goes to `<name>.tmp`, is flushed, sealed, fsynced and renamed, and
// the directory fsynced: a crash never leaves a torn file under a final name.
// Loading validates everything and reports the first problem as one line
// naming the file and the field; it never modifies any file.
#pragma once
#include <stddef.h>
#include <stdint.h>

#include "config.h"
#include "model.h"

#define CKPT_FORMAT_VERSION 1

#define CKPT_RUN_ID_LEN 40  // room for a run identity (32 hex digits) and its NUL

typedef struct {
    long step;          // optimizer steps taken; training resumes at step + 1
    uint64_t seed;
    long data_cursor;   // next batch is dataset_batch(data_cursor + 1)
    long global_batch;  // sequences per step over all data-parallel replicas
                        // (dp x batch): it decides which windows are drawn
    // What the run knew when it wrote the file (root attributes; absent in
    // files of older builds: loss NAN, last_sane_step = step, run_id ""):
    double loss;          // training loss of the step (attribute "loss")
    long last_sane_step;  // the newest checkpoint of the run whose loss was sane, this one included
    char run_id[CKPT_RUN_ID_LEN];  // the run's identity (attribute "run_id")
    // Written only: the tokenizer model's bytes (/tokenizer/spiece_model), or
    // NULL for a byte-level run. ckpt_read_tokenizer reads them back.
    const void *tokenizer;
    size_t tokenizer_len;
} CkptState;

// A training loss is sane when finite and at most twice that of a uniform
// guess, 2 ln(vocab_size): a run far above it has diverged.
int ckpt_loss_is_sane(double loss, int vocab_size);

// "<dir>/ckpt_<step, 8 digits>.h5".
void ckpt_path(char *out, size_t cap, const char *dir, long step);

// Write the checkpoint of `step` (after that many optimizer steps), trained
// with global_batch sequences per step over all replicas, into dir,
// then delete all but the newest `keep` checkpoints (0 = keep all) and any
// leftover *.tmp of crashed writers. The written path goes to path_out.
// Returns 0, or -1 with a one-line message (the temporary file is removed;
// existing checkpoints are untouched).
int ckpt_save(const char *dir, Model *m, long step, long global_batch, int keep, char *path_out, size_t path_cap,
              char *err, size_t errlen);

// ckpt_save with what the trainer knows of the run, stored as root
// attributes: st->step, global_batch, loss, last_sane_step and run_id (the
// seed and cursor come from the model and step). Pruning never deletes the
// checkpoint of last_sane_step, so a diverging run keeps its last sane one.
int ckpt_save_run(const char *dir, Model *m, const CkptState *st, int keep, char *path_out, size_t path_cap,
                  char *err, size_t errlen);

// Is every entry of dir named like a checkpoint (ckpt_<step>.h5) a regular
// file? A directory or a special file under such a name would be taken for
// the newest checkpoint by every resume and fresh-run check. Returns 0 (or
// when dir does not exist), or -1 with a one-line message naming the path.
int ckpt_check_names(const char *dir, char *err, size_t errlen);

// The newest complete checkpoint in dir (largest step; *.tmp ignored).
// Returns 0, or -1 with a one-line message naming dir.
int ckpt_find_latest(const char *dir, char *path, size_t cap, long *step, char *err, size_t errlen);

// Validate a checkpoint's seal, format version and config; fill c with its
// finalized config and *step. Tensors are not read.
int ckpt_read_config(const char *path, Config *c, long *step, char *err, size_t errlen);

// Validate the whole checkpoint against m (shape keys equal, every tensor
// present with m's shape and finite values, moments v >= 0, consistent state)
// and only then copy parameters and AdamW moments into m. On failure m is
// unchanged. st (may be NULL) receives the state.
int ckpt_load(const char *path, Model *m, CkptState *st, char *err, size_t errlen);

// Validate a whole checkpoint as ckpt_load would, against the model its own
// config describes (every tensor, every value, the state), without a model:
// fill c with its finalized config and *step. Returns 0, or -1 with a
// one-line message naming the file and the field.
int ckpt_verify(const char *path, Config *c, long *step, CkptState *st, char *err, size_t errlen);

// The newest checkpoint of dir that ckpt_verify accepts: its path, step and
// config. Each newer one that fails is skipped, and its one-line reason
// (naming the file) appended to skipped, one line each. Returns 0, or -1
// when dir has no checkpoint or none is valid (err then lists every reason).
// A file whose name says another step than the one inside it (a checkpoint
// renamed into the directory) is refused, not skipped. st (may be NULL)
// receives the chosen file's state (run_id, last_sane_step, ...).
int ckpt_find_resumable(const char *dir, char *path, size_t cap, long *step, Config *c, CkptState *st,
                        char *skipped, size_t skipped_cap, char *err, size_t errlen);

// The steps of dir's checkpoints (ckpt_<step>.h5; *.tmp ignored), newest
// first, *n of them; free() the result. NULL with a message if dir cannot be
// read.
long *ckpt_list_steps(const char *dir, size_t *n, char *err, size_t errlen);

// The run identity a checkpoint stores ("" for files of older builds),
// after checking its seal. Returns 0, or -1 with a one-line message.
int ckpt_read_run_id(const char *path, char *run_id, size_t cap, char *err, size_t errlen);

// The tokenizer model stored in a checkpoint (after checking its seal): a
// malloc'ed copy in *bytes (*n of them), or *bytes = NULL when the checkpoint
// has none. Returns 0, or -1 with a one-line message naming the file.
int ckpt_read_tokenizer(const char *path, void **bytes, size_t *n, char *err, size_t errlen);

// Recompute and rewrite the seal of a checkpoint file in place (for tools and
// tests that edit a checkpoint through HDF5 on purpose).
int ckpt_reseal(const char *path, char *err, size_t errlen);
