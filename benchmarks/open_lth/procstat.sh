#!/bin/bash
# usage: procstat.sh &  — appends the machine's CPU counters (user nice system idle iowait irq softirq steal,
# in 1/100 s) once a second to $OLTH_DIR/procstat.log, which analyze.py reads for "machine busy" and "steal".
D=${OLTH_DIR:-$HOME/olth}
while true; do echo "$(date +%s.%N) $(head -1 /proc/stat | awk '{print $2,$3,$4,$5,$6,$7,$8,$9}')" >> $D/procstat.log; sleep 1; done
