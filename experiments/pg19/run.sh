#!/usr/bin/env bash
# PG-19 as researchers run it, at this machine's scale, on the Shakespeare
# PG-19-shaped directory of shakespeare.sh (issue: SentencePiece, word-level
# perplexity, whole books as samples). Stages (each training or timing run
# takes the shared heavy lock on its own, so other work interleaves):
#
#   experiments/pg19/run.sh models    SentencePiece unigram models of 320 and
#                                     8192 pieces on the train split
#   experiments/pg19/run.sh encode    encoding throughput (MB/s), 2 threads
#   experiments/pg19/run.sh compare   bytes vs SP-320 vs SP-8K: same model,
#                                     same training bytes; whole-split eval
#   experiments/pg19/run.sh whole     whole works as 131,072-token samples,
#                                     the Crime-and-Punishment model shape
#
# Logs go to experiments/pg19/logs/; table.py turns them into results.md.
set -euo pipefail
cd "$(dirname "$0")/../.."
here=experiments/pg19
logs=$here/logs
work=build/pg19
lock=(flock "${HEAVY_LOCK:-/tmp/reformer-heavy.lock}")
mkdir -p "$logs" "$work"
make -s build/reformer
data=$($here/shakespeare.sh)
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-2}  # the whole-works run may take one core

models() {
    for v in 320 8192; do
        [ -f "$work/sp$v.model" ] || build/reformer tokenize --data "$data" --vocab "$v" --out "$work/sp$v.model"
    done
}

# Encoding throughput: the Shakespeare directory (77 documents, 9.5 MB) and
# one 47.7 MB file of it five times over (one document: chunks of 1 MiB cut
# after newlines, encoded in parallel), each with its cache removed first,
# so `train --set steps=0` encodes it once and stops.
encode() {
    local big=$work/big.txt
    [ -f "$big" ] || for _ in 1 2 3 4 5; do cat "$data"/train/*.txt "$data"/validation/*.txt "$data"/test/*.txt; done > "$big"
    # The four encodings (about a minute) are one measurement: one lock hold.
    # shellcheck disable=SC2016
    "${lock[@]}" bash -c '
        for v in 320 8192; do
            for src in "$1" "$2"; do
                rm -f "$1"/tokens-*.bin "$2".tokens-*.bin
                echo "== sp$v $src"
                build/reformer train --set data="$src" --set tokenizer="$3/sp$v.model" --set steps=0 \
                    --set seq_len=128 --set out_dir="$3/encode" 2>&1 | grep "^tokenizer: encoded"
                rm -rf "$3/encode"
            done
        done' encode "$data" "$big" "$work" > "$logs/encode.log"
    cat "$logs/encode.log"
}

# Bytes against subwords: one model shape (only the embedding and output
# layer grow with the vocabulary), seq_len 1024 tokens, batch 4, and the same
# number of training BYTES for each: steps = BYTES / (4 * 1024 * bytes per
# token of the train split). Then the whole validation split in training form.
# ROWS picks the vocabularies (default: bytes 320 8192).
BYTES=${BYTES:-819200}
MODEL="--set d_model=128 --set d_ff=512 --set n_layers=4 --set n_heads=4 --set seq_len=1024 --set batch=4 \
--set lr=2e-3 --set warmup=30 --set eval_every=0 --set ckpt_every=0 --set log_every=10"
compare() {
    for v in ${ROWS:-bytes 320 8192}; do
        local tok=none bpt=1
        if [ "$v" != bytes ]; then
            tok=$work/sp$v.model
            # Bytes per token of the train split (encoding it into the cache once).
            local tokens bytes
            tokens=$(build/reformer train --set data="$data" --set tokenizer="$tok" --set steps=0 --set seq_len=128 \
                --set out_dir="$work/probe" 2>/dev/null | sed -n 's/.*| train [0-9]* docs \([0-9]*\) tokens.*/\1/p')
            rm -rf "$work/probe"
            bytes=$(cat "$data"/train/*.txt | wc -c)
            bpt=$(python3 -c "print(round($bytes / $tokens, 4))")
        fi
        local steps
        steps=$(python3 -c "import math; print(math.ceil($BYTES / (4 * 1024 * $bpt)))")
        echo "== $v: $steps steps ($bpt bytes/token)" | tee "$logs/compare_$v.log"
        rm -rf "$work/compare_$v"
        # Training and its evaluation: one lock hold.
        # shellcheck disable=SC2086,SC2016
        "${lock[@]}" bash -c '/usr/bin/time -f "time: %e s, peak RSS %M KiB" "$@" && build/reformer eval --ckpt "$0" \
            2>/dev/null' "$work/compare_$v/ckpt_$(printf %08d "$steps").h5" build/reformer train \
            --set data="$data" --set tokenizer="$tok" $MODEL --set steps="$steps" --set out_dir="$work/compare_$v" \
            >> "$logs/compare_$v.log" 2>&1
        tail -1 "$logs/compare_$v.log"
    done
}

# Whole works as samples: each training sample one work (a file of the
# train split), SP-320 tokens, in a 131,072-token window with random padding
# (whole_docs=1; the few works longer than that are cut to a random run).
# The Crime-and-Punishment shape: 6 layers local/lsh, d_model 256, d_ff 512,
# 2 heads of 64, n_hashes 1, chunks 64, n_buckets 64,128 (factorised, as
# google/reformer-crime-and-punishment). Runs for WHOLE_MIN minutes of steps.
WHOLE_MIN=${WHOLE_MIN:-15}
whole() {
    local out=$work/whole
    rm -rf "$out"
    # shellcheck disable=SC2086
    "${lock[@]}" timeout --signal=TERM "$((WHOLE_MIN * 60))" /usr/bin/time -f "time: %e s, peak RSS %M KiB" \
        build/reformer train --set data="$data" --set tokenizer="$work/sp320.model" --set whole_docs=1 \
        --set seq_len=131072 --set batch=1 --set n_layers=6 --set attn_layers=local,lsh --set d_model=256 \
        --set d_ff=512 --set n_heads=2 --set d_head=64 --set n_hashes=1 --set lsh_chunk=64 --set local_chunk=64 \
        --set n_buckets=64,128 \
        --set lr=1e-3 --set warmup=10 --set schedule=constant --set steps=1000 --set eval_every=10 \
        --set eval_windows=2 --set ckpt_every=10 --set out_dir="$out" > "$logs/whole.log" 2>&1 || true
    tail -3 "$logs/whole.log"
}

for stage in "${@:-models encode compare whole}"; do
    for s in $stage; do "$s"; done
done
