#!/bin/bash
# usage: run_all.sh FIRST_ROUND LAST_ROUND [CONTENDERS...] — interleaved, one of each contender per round
# (default: kl_tf kl_search_jax olth100 olthdefault)
FIRST=$1; LAST=$2; shift 2
CONT=${*:-kl_tf kl_search_jax olth100 olthdefault}
for r in $(seq $FIRST $LAST); do
  for c in $CONT; do
    echo "$(date +%T) before ${c}_$r: $(uptime)"
    ${OLTH_DIR:-$HOME/olth}/bench.sh ${c}_$r
  done
done
echo "$(date +%T) all done: $(uptime)"
