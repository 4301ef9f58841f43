#!/bin/sh
# Run one rank under /usr/bin/time and print its peak RSS (kB) as
# `rank_rss RANK KB`: past_heads.sh's step rows, one line per rank. With
# RANK_RSS_DIR set the line goes to RANK_RSS_DIR/rank_RANK (ranks writing to
# one stderr can interleave mid-line), else to stderr.
rank=${OMPI_COMM_WORLD_RANK:-0}
if [ -n "${RANK_RSS_DIR:-}" ]; then
    exec /usr/bin/time -o "$RANK_RSS_DIR/rank_$rank" -f "rank_rss $rank %M" "$@"
fi
exec /usr/bin/time -f "rank_rss $rank %M" "$@"
