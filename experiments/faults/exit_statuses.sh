#!/usr/bin/env bash
# The exit-status table of experiments/faults/results.md, made by running
# every fault case of issue 21: the command, the one line it prints on
# stderr (the error or stop line; for a run that completes, its last line),
# and its exit status. Run from the repository root after `make` (and `make
# setup-hf` for the import-hf/export-hf rows; without .venv-hf those rows
# say so):
#
#   experiments/faults/exit_statuses.sh > experiments/faults/results.md
#
# Paths under the temporary directory are shown as $W. Each case is small
# (tiny models, a few steps); the whole table takes about two minutes.
set -euo pipefail
cd "$(dirname "$0")/../.."
root=$PWD
R=$root/build/reformer
W=$(mktemp -d "${TMPDIR:-/tmp}/reformer-faults.XXXXXX")
mounts=()
cleanup() {
    for m in ${mounts[@]+"${mounts[@]}"}; do umount "$m" 2>/dev/null || true; done
    rm -rf "$W"
}
trap cleanup EXIT
export OMP_NUM_THREADS=1
py=python3
if [[ -x /usr/bin/python3 ]]; then py=/usr/bin/python3; fi
hf_py=$root/.venv-hf/bin/python
TINY=(--set seq_len=128 --set d_model=32 --set d_ff=64 --set n_layers=2 --set n_heads=2 --set lsh_chunk=32
    --set local_chunk=32 --set batch=2 --set data="$root/data/tinyshakespeare.txt" --set eval_every=0)

rows=()
# row CASE SHOWN_COMMAND COMMAND...: runs COMMAND (in $W), records its exit
# status and the stderr line that matters.
row() {
    local what=$1 shown=$2 status=0
    shift 2
    (cd "$W" && "$@") >"$W/out" 2>"$W/err" </dev/null || status=$?
    local line
    line=$(grep -E '^(reformer: (rank [0-9]+: )?error|reformer: stopped|reformer: error)' "$W/err" | tail -n 1 || true)
    if [[ -z $line ]]; then line=$(grep -v '^ *$' "$W/out" | tail -n 1 || true); fi
    line=${line//$W/\$W}
    line=${line//$root\//}
    line=${line//|/\\|}
    rows+=("| $what | \`${shown//|/\\|}\` | ${line:-(nothing)} | $status |")
}

# 2.1 ranks on one node
row "2.1 two ranks whose plans fit the node's memory one at a time, not together" \
    "REFORMER_MEM_AVAILABLE=50M launch/mpirun.sh -np 2 reformer train TINY --set batch=1" \
    env REFORMER_MEM_AVAILABLE=50M "$root/launch/mpirun.sh" -np 2 "$R" train "${TINY[@]}" --set batch=1 --set steps=2 \
    --set out_dir="$W/r21"

# 2.2 page cache in a cgroup (a fake /proc and /sys/fs/cgroup: REFORMER_TEST_SYSROOT)
mkdir -p "$W/sys/proc/self" "$W/sys/sys/fs/cgroup/job"
echo "MemAvailable: 67108864 kB" >"$W/sys/proc/meminfo"
echo "0::/job" >"$W/sys/proc/self/cgroup"
echo 209715200 >"$W/sys/sys/fs/cgroup/job/memory.max"
echo 199229440 >"$W/sys/sys/fs/cgroup/job/memory.current"
printf 'anon 10485760\nfile 188743680\n' >"$W/sys/sys/fs/cgroup/job/memory.stat"
row "2.2 cgroup v2: 200 MiB limit, 190 MiB used, 180 MiB of it clean page cache" \
    "REFORMER_TEST_SYSROOT=\$W/sys reformer bench --json --steps 1 TINY" \
    env REFORMER_TEST_SYSROOT="$W/sys" "$R" bench --json --steps 1 --warmup 0 "${TINY[@]}"
printf 'anon 188743680\nfile 10485760\n' >"$W/sys/sys/fs/cgroup/job/memory.stat"
row "2.2 the same cgroup, the 190 MiB anonymous memory" \
    "REFORMER_TEST_SYSROOT=\$W/sys reformer bench --json --steps 1 TINY" \
    env REFORMER_TEST_SYSROOT="$W/sys" "$R" bench --json --steps 1 --warmup 0 "${TINY[@]}"

# 2.3 data rewritten in place
cp data/tinyshakespeare.txt "$W/data.txt"
"$R" train "${TINY[@]}" --set steps=100000 --set log_every=100000 --set out_dir="$W/r23" --set data="$W/data.txt" \
    --set ckpt_every=20 >/dev/null 2>"$W/bg.err" &
pid=$!
for _ in $(seq 1 300); do [[ -e $W/r23/ckpt_00000020.h5 ]] && break; sleep 0.1; done
dd if=/dev/urandom of="$W/data.txt" bs=1000 count=1 seek=5 conv=notrunc 2>/dev/null
status=0
wait "$pid" || status=$?
line=$(tail -n 1 "$W/bg.err")
line=${line//$W/\$W}
rows+=("| 2.3 the data file rewritten in place mid-run (same size) | \`reformer train TINY --set data=\$W/data.txt --set ckpt_every=20\`, then \`dd if=/dev/urandom of=\$W/data.txt bs=1000 count=1 seek=5 conv=notrunc\` | $line | $status |")

# 2.4 a directory named like a checkpoint
"$R" train "${TINY[@]}" --set steps=4 --set ckpt_every=2 --set out_dir="$W/r24" >/dev/null 2>&1
mkdir "$W/r24/ckpt_00000008.h5"
row "2.4 a directory named like the newest checkpoint, resumed" "reformer train --resume \$W/r24 --set steps=10" \
    "$R" train --resume "$W/r24" --set steps=10
row "2.4 the same, as a fresh run" "reformer train TINY --set out_dir=\$W/r24" "$R" train "${TINY[@]}" --set out_dir="$W/r24"
row "2.4 the same, --resume auto" "reformer train TINY --resume auto --set out_dir=\$W/r24" \
    "$R" train "${TINY[@]}" --resume auto --set out_dir="$W/r24"

# 2.5, 2.6 import-hf / export-hf
if [[ -x $hf_py ]]; then
    mk() {  # mk DIR [python statements on d, the model directory]: a random HF model
        "$hf_py" - "$1" "${2:-}" <<'EOF' >/dev/null 2>&1
import json, os, sys, torch
from transformers import ReformerConfig, ReformerModelWithLMHead
d, edit = sys.argv[1], sys.argv[2]
torch.manual_seed(0)
ReformerModelWithLMHead(ReformerConfig(vocab_size=256, hidden_size=32, feed_forward_size=64, num_attention_heads=2,
    attention_head_size=16, attn_layers=["local", "lsh"], lsh_attn_chunk_length=64, local_attn_chunk_length=16,
    num_hashes=2, num_buckets=2, axial_pos_shape=[8, 8], axial_pos_embds_dim=[16, 16], max_position_embeddings=64,
    is_decoder=True)).save_pretrained(d, safe_serialization=True)
def cfg(**c):
    p = os.path.join(d, "config.json"); j = json.load(open(p)); j.update(c); json.dump(j, open(p, "w"))
def weights(f):
    from safetensors.torch import load_file, save_file
    p = os.path.join(d, "model.safetensors"); t = load_file(p); f(t); save_file(t, p, metadata={"format": "pt"})
exec(edit)
EOF
    }
    imp() {  # imp CASE EDIT: import-hf of a model damaged by EDIT
        local d=$W/hf_${#rows[@]}
        mk "$d" "$2"
        row "$1" "reformer import-hf --model \$W/hf --out \$W/ckpt.h5  # $2" \
            "$R" import-hf --model "$d" --out "$W/ckpt_${#rows[@]}.h5"
    }
    imp "2.5 import-hf: a NaN weight" 'weights(lambda t: t["reformer.encoder.layer_norm.weight"].__setitem__(0, float("nan")))'
    imp "2.6 import-hf: config.json not JSON" 'open(os.path.join(d, "config.json"), "w").write("{not json")'
    imp "2.6 import-hf: config.json empty" 'open(os.path.join(d, "config.json"), "w").write("")'
    imp "2.6 import-hf: config.json a directory" 'os.remove(os.path.join(d, "config.json")); os.mkdir(os.path.join(d, "config.json"))'
    imp "2.6 import-hf: no model.safetensors" 'os.remove(os.path.join(d, "model.safetensors"))'
    imp "2.6 import-hf: model.safetensors truncated" 'p = os.path.join(d, "model.safetensors"); b = open(p, "rb").read(); open(p, "wb").write(b[: len(b) // 2])'
    imp "2.6 import-hf: model.safetensors garbage" 'open(os.path.join(d, "model.safetensors"), "wb").write(bytes(range(256)) * 20)'
    imp "2.6 import-hf: model.safetensors with a huge header length" 'p = os.path.join(d, "model.safetensors"); b = open(p, "rb").read(); open(p, "wb").write((10 ** 15).to_bytes(8, "little") + b[8:])'
    imp "2.6 import-hf: shapes not config.json's" 'cfg(feed_forward_size=48)'
    imp "2.6 import-hf: vocab_size 0" 'cfg(vocab_size=0)'
    imp "2.6 import-hf: 0 heads" 'cfg(num_attention_heads=0)'
    imp "2.6 import-hf: tie_word_embeddings=true" 'cfg(tie_word_embeddings=True)'
    imp "2.6 import-hf: int32 weights" 'weights(lambda t: t.__setitem__("reformer.encoder.layer_norm.weight", t["reformer.encoder.layer_norm.weight"].to(torch.int32)))'
    imp "2.6 import-hf: an unexpected tensor" 'weights(lambda t: t.__setitem__("extra.weight", torch.zeros(3)))'
    mk "$W/hf_ok" ""
    if mkdir -p "$W/full" && mount -t tmpfs -o size=64k tmpfs "$W/full" 2>/dev/null; then
        mounts+=("$W/full")
        row "2.6 import-hf: a full disk (64 KiB tmpfs)" "reformer import-hf --model \$W/hf --out \$W/full/ckpt.h5" \
            "$R" import-hf --model "$W/hf_ok" --out "$W/full/ckpt.h5"
        "$R" train "${TINY[@]}" --set steps=1 --set out_dir="$W/r26" >/dev/null 2>&1
        row "2.6 export-hf: a full disk" "reformer export-hf --ckpt \$W/r26/ckpt_00000001.h5 --out \$W/full/hf" \
            "$R" export-hf --ckpt "$W/r26/ckpt_00000001.h5" --out "$W/full/hf"
        mkdir -p "$W/ro" "$W/mnt"
        mount -t tmpfs -o ro,size=1m tmpfs "$W/ro" && mounts+=("$W/ro")
        row "2.6 export-hf: a read-only target" "reformer export-hf --ckpt \$W/r26/ckpt_00000001.h5 --out \$W/ro/hf" \
            "$R" export-hf --ckpt "$W/r26/ckpt_00000001.h5" --out "$W/ro/hf"
        mount -t tmpfs -o size=16m tmpfs "$W/mnt" && mounts+=("$W/mnt")
        row "2.6 export-hf: an empty mount point as --out (written into)" \
            "reformer export-hf --ckpt \$W/r26/ckpt_00000001.h5 --out \$W/mnt" \
            "$R" export-hf --ckpt "$W/r26/ckpt_00000001.h5" --out "$W/mnt"
    else
        rows+=("| 2.6 full disk, read-only target, mount point | (needs root to mount a tmpfs: not run) | | |")
    fi
else
    rows+=("| 2.5, 2.6 import-hf / export-hf | (no .venv-hf: run make setup-hf; not run) | | |")
fi

# 2.7 SIGTERM under launch/mpirun.sh
"$root/launch/mpirun.sh" -np 2 "$R" train "${TINY[@]}" --set batch=1 --set steps=100000 --set log_every=100000 \
    --set out_dir="$W/r27" >/dev/null 2>"$W/bg.err" &
pid=$!
sleep 3
kill -TERM "$pid"
status=0
wait "$pid" || status=$?
line=$(grep '^reformer: stopped' "$W/bg.err" | tail -n 1)
line=${line//$W/\$W}
rows+=("| 2.7 SIGTERM to launch/mpirun.sh (2 ranks) | \`launch/mpirun.sh -np 2 reformer train TINY --set batch=1 &\` then \`kill -TERM\` | $line | $status |")

# 2.8 plan --fit against preflight
FIT=(--set d_model=32 --set d_ff=64 --set n_layers=2 --set n_heads=2 --set batch=1 --set seq_len=32)
row "2.8 plan --fit (automatic chunk 32 at seq_len 32, 64 at the fitted length)" "reformer plan FIT --fit 42M" \
    "$R" plan "${FIT[@]}" --fit 42M
L=$(grep -o 'longest seq_len [0-9]*' "$W/out" | grep -o '[0-9]*$')
row "2.8 the fitted length in that budget" "REFORMER_MEM_AVAILABLE=42M reformer bench --json --steps 1 FIT --set seq_len=$L" \
    env REFORMER_MEM_AVAILABLE=42M "$R" bench --json --steps 1 --warmup 0 "${FIT[@]}" --set seq_len="$L"
row "2.8 one chunk more" "REFORMER_MEM_AVAILABLE=42M reformer bench --json --steps 1 FIT --set seq_len=$((L + 64))" \
    env REFORMER_MEM_AVAILABLE=42M "$R" bench --json --steps 1 --warmup 0 "${FIT[@]}" --set seq_len="$((L + 64))"

# 2.9 an sp=4 checkpoint resumed in one process
"$root/launch/mpirun.sh" -np 4 "$R" train "${TINY[@]}" --set sp=4 --set n_heads=4 --set d_head=8 --set batch=1 --set steps=2 \
    --set out_dir="$W/r29" >/dev/null 2>&1
row "2.9 an sp=4 checkpoint resumed in one process" "reformer train --resume \$W/r29 --set steps=4" \
    "$R" train --resume "$W/r29" --set steps=4
row "2.9 the same with --set sp=1" "reformer train --resume \$W/r29 --set steps=4 --set sp=1" \
    "$R" train --resume "$W/r29" --set steps=4 --set sp=1

# 2.10 sizes
row "2.10 REFORMER_MEM_AVAILABLE=nan" "REFORMER_MEM_AVAILABLE=nan reformer bench --steps 1 TINY" \
    env REFORMER_MEM_AVAILABLE=nan "$R" bench --json --steps 1 "${TINY[@]}"
row "2.10 --fit nan" "reformer plan TINY --fit nan" "$R" plan "${TINY[@]}" --fit nan
row "2.10 --fit 100000T" "reformer plan TINY --fit 100000T" "$R" plan "${TINY[@]}" --fit 100000T
row "2.10 --fit 16GB (16e9 bytes)" "reformer plan TINY --fit 16GB" "$R" plan "${TINY[@]}" --fit 16GB

# 2.11 small inconsistencies
"$R" train "${TINY[@]}" --set steps=1 --set out_dir="$W/r211" >/dev/null 2>&1
row "2.11 sample without --prompt" "reformer sample --ckpt \$W/r211/ckpt_00000001.h5 --len 4" \
    "$R" sample --ckpt "$W/r211/ckpt_00000001.h5" --len 4
row "2.11 sample --prompt ''" "reformer sample --ckpt \$W/r211/ckpt_00000001.h5 --prompt '' --len 4" \
    "$R" sample --ckpt "$W/r211/ckpt_00000001.h5" --prompt '' --len 4
row "2.11 axial_shape=0 (automatic)" "reformer plan TINY --set axial_shape=0" "$R" plan "${TINY[@]}" --set axial_shape=0
if command -v h5unjam >/dev/null && "$py" -c 'import h5py' 2>/dev/null; then
    h5unjam -i "$W/r211/ckpt_00000001.h5" -o "$W/noseed.h5" >/dev/null 2>&1
    "$py" -c 'import h5py, sys; f = h5py.File(sys.argv[1], "r+"); del f.attrs["seed"]; f.close()' "$W/noseed.h5"
    row "2.11 a checkpoint without its seed attribute" "reformer eval --ckpt \$W/noseed.h5 --windows 1" \
        "$R" eval --ckpt "$W/noseed.h5" --windows 1
fi

cat <<EOF
# Exit statuses of the fault cases of issue 21

Generated by \`experiments/faults/exit_statuses.sh > experiments/faults/results.md\`
(commit $(git rev-parse --short HEAD), $(date -u +%Y-%m-%d)): each case run, the line it printed on
stderr (for a run that completes, its last line of output) and its exit status. TINY is
\`${TINY[*]//$root\//}\`; FIT is \`${FIT[*]}\`. Paths under the script's
temporary directory read \$W. Exit statuses: 0 done, 1 a failure while running (the run
keeps its last checkpoint), 2 bad input or a refused start (nothing written), 75 stopped
by a signal after writing a checkpoint (\`--resume\` continues it).

| case | command | line printed | exit |
|---|---|---|---|
EOF
printf '%s\n' "${rows[@]}"
