#!/usr/bin/env bash
# Issue 9: one training step at 1M and 2M tokens, bytes per token at 64K vs
# 1M, depth 12 vs 2 layers. Each row: one `reformer bench` process under the
# shared heavy-job lock, peak RSS from /usr/bin/time -v (batch 1).
# Usage: experiments/memory/long.sh [BIN] [ROW...]   (BIN default build/reformer;
# rows: see below). Appends to long.jsonl next to this script.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
bin="${1:-build/reformer}"
shift || true
out="$here/long.jsonl"
model=(--set batch=1 --set d_model=256 --set d_ff=1024 --set n_hashes=2 --set axial_dims=128,128)

row() {  # name, then bench arguments
    local name="$1"
    shift
    free -g | sed 's/^/# /' >&2
    local log
    log=$(mktemp)
    if flock /tmp/reformer-heavy.lock /usr/bin/time -v "$bin" bench --json --warmup 0 --steps 1 "$@" >"$log.out" 2>"$log"; then
        local rss
        rss=$(sed -n 's/.*Maximum resident set size (kbytes): //p' "$log")
        python3 - "$name" "$rss" "$log.out" "$*" >>"$out" <<'PY'
import json, sys
name, rss_kb, path, args = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
r = json.loads(open(path).read().strip().splitlines()[-1])
r.update(experiment=name, time_v_max_rss_mib=rss_kb / 1024, args=args)
print(json.dumps(r))
PY
        tail -1 "$out" >&2
    else
        echo "row $name failed:" >&2
        cat "$log" "$log.out" >&2
    fi
    rm -f "$log" "$log.out"
}

for r in "${@:-2m_g2 1m_g2 1m_g4 64k_g2 64k_g4 depth}"; do
    for what in $r; do
        case "$what" in
        2m_g2) row 2m_g2 "${model[@]}" --set n_layers=4 --set seq_len=2097152 --set axial_shape=2048,1024 --set attn_head_group=2 ;;
        2m) # the largest head group whose plan fits what is available now (others share the machine)
            avail=$(awk '/MemAvailable/ {print int($2 / 1048576)}' /proc/meminfo)
            g=1
            ((avail >= 17)) && g=2
            row "2m_g$g" "${model[@]}" --set n_layers=4 --set seq_len=2097152 --set axial_shape=2048,1024 --set attn_head_group=$g ;;
        2m_g2_nb8192) # 8,192 buckets instead of the automatic 65,536: the hash projections (L x R x nb/2 x dh
            # per head) grow as L^2 / lsh_chunk and take 2/3 of the 1M step's time; memory is the same
            row 2m_g2_nb8192 "${model[@]}" --set n_layers=4 --set seq_len=2097152 --set axial_shape=2048,1024 --set attn_head_group=2 --set n_buckets=8192 ;;
        2m_g1) row 2m_g1 "${model[@]}" --set n_layers=4 --set seq_len=2097152 --set axial_shape=2048,1024 --set attn_head_group=1 ;;
        1m_g2) row 1m_g2 "${model[@]}" --set n_layers=4 --set seq_len=1048576 --set axial_shape=1024,1024 --set attn_head_group=2 ;;
        1m_g4) row 1m_g4 "${model[@]}" --set n_layers=4 --set seq_len=1048576 --set axial_shape=1024,1024 ;;
        64k_g2) row 64k_g2 "${model[@]}" --set n_layers=4 --set seq_len=65536 --set attn_head_group=2 ;;
        64k_g4) row 64k_g4 "${model[@]}" --set n_layers=4 --set seq_len=65536 ;;
        depth)
            for n in 2 12; do row "depth_$n" "${model[@]}" --set n_layers=$n --set seq_len=16384; done ;;
        *) echo "unknown row $what" >&2; exit 2 ;;
        esac
    done
done
