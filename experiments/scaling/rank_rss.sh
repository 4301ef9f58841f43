#!/bin/sh
# Run one rank under /usr/bin/time and print its peak RSS (kB) on stderr as
# `rank_rss RANK KB`: past_heads.sh's step rows, one line per rank.
exec /usr/bin/time -f "rank_rss ${OMPI_COMM_WORLD_RANK:-0} %M" "$@"
