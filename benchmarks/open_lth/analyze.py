# usage: python3 analyze.py  — summarizes $OLTH_DIR/bench/*/ (default ~/olth) (time.txt, stdout, metrics, load samples)
import glob, json, os, re, statistics as st

B = os.environ.get("BENCH_DIR") or os.path.join(os.environ.get("OLTH_DIR", os.path.expanduser("~/olth")), "bench")
CONT = ["kl_tf", "kl_tf_base", "kl_search_jax", "kl_search_jax_eb", "kl_search_tf", "kl_search_tf_eb",
        "kl_search_tf1", "kl_search_torch", "olth100", "olthdefault",
        "floor_tf", "floor_jax", "floor_torch", "floor_olth"]


# Label prefixes of the contenders paired with open_lth: keras-lottery's and plain Keras's.
OURS = ("kl_", "keras_fit_")


def order(c):
    """Known contenders in CONT's order; other kl_* variants (kl_search_tf1_eb_f32, say) and
    keras_fit_* after them."""
    return (CONT.index(c), c) if c in CONT else (len(CONT), c)


def parse_time(p):
    t = open(p).read()
    def g(k):
        return re.search(re.escape(k) + r":\s*(.+)", t).group(1).strip()
    el = g("Elapsed (wall clock) time (h:mm:ss or m:ss)").split(":")
    wall = sum(float(x) * 60 ** i for i, x in enumerate(reversed(el)))
    return dict(wall=wall, cpu=float(g("User time (seconds)")) + float(g("System time (seconds)")),
                user=float(g("User time (seconds)")), sys=float(g("System time (seconds)")),
                rss_mib=int(g("Maximum resident set size (kbytes)")) / 1024,
                exit=int(g("Exit status")))


def loads(d):
    vals = []
    for line in open(os.path.join(d, "others.txt")):
        m = re.match(r"\d\d:\d\d:\d\d ([\d.]+), ([\d.]+), ([\d.]+)", line)
        if m:
            vals.append(float(m.group(1)))
    others = [l.strip() for l in open(os.path.join(d, "others.txt")) if not re.match(r"\d\d:\d\d:\d\d ", l) and "ps -eo" not in l]
    before = re.search(r"load average: ([\d.]+)", open(os.path.join(d, "load_before.txt")).read()).group(1)
    return float(before), vals, others


def kl_info(d):
    out = open(os.path.join(d, "stdout.txt")).read()
    rows = re.findall(r"^\| (\d) +\| ticket \| ([\d.]+) +\| (\d+) +\| ([\d.]+) +\| ([\d.]+) +\|", out, re.M)
    final = {int(r[0]): (float(r[1]), float(r[3]), float(r[4])) for r in rows}
    sps = []
    for m in sorted(glob.glob(os.path.join(d, "runs", "*", "round_0*", "metrics.json"))):
        sps.append(json.load(open(m))["steps_per_second"])
    return final, sps


def olth_info(d):
    out = open(os.path.join(d, "stdout.txt")).read()
    levels = re.split(r"Pruning Level (\d+)", out)
    final = {}
    for i in range(1, len(levels), 2):
        lv = int(levels[i]); tests = re.findall(r"test\tep \d+\tit \d+\tloss [\d.]+\tacc ([\d.]+)%", levels[i + 1])
        final[lv] = float(tests[-1]) / 100 if tests else None
    sps = [float(x) for x in re.findall(r"steps_per_s ([\d.]+)", out)]
    rem = {}
    for p in glob.glob(os.path.join(d, "root", "*", "replicate_1", "level_*", "main", "sparsity_report.json")):
        r = json.load(open(p)); lv = int(re.search(r"level_(\d+)", p).group(1))
        rem[lv] = 100.0 * r["unpruned"] / r["total"]
    return final, sps, rem


import datetime
PS = []
if os.path.exists(os.path.join(os.path.dirname(B), "procstat.log")):
    for line in open(os.path.join(os.path.dirname(B), "procstat.log")):
        f = line.split()
        if len(f) == 9:
            t = float(f[0]); v = [int(x) for x in f[1:]]
            PS.append((t, sum(v[0:3]) + v[5] + v[6], v[7]))  # busy = user+nice+system+irq+softirq; steal


def machine_cpu(d):
    """busy CPU seconds of the whole machine and steal seconds between the run's start and end, or None."""
    st0 = re.search(r"start (\S+)", open(os.path.join(d, "load_before.txt")).read()).group(1)
    en = re.search(r"end (\S+)", open(os.path.join(d, "load_after.txt")).read()).group(1)
    t0 = datetime.datetime.fromisoformat(st0).timestamp(); t1 = datetime.datetime.fromisoformat(en).timestamp()
    a = [x for x in PS if x[0] <= t0 + 0.5]; b = [x for x in PS if x[0] >= t1 - 0.5]
    if not a or not b or a[-1][0] < t0 - 3 or b[0][0] > t1 + 3:
        return None
    return (b[0][1] - a[-1][1]) / 100.0, (b[0][2] - a[-1][2]) / 100.0


runs = {}
for d in sorted(glob.glob(os.path.join(B, "*"))):
    lab = os.path.basename(d)
    m = re.match(r"(.+)_(\d+)$", lab)
    if not m or not os.path.exists(os.path.join(d, "time.txt")) or "Exit status" not in open(os.path.join(d, "time.txt")).read():
        continue
    c, n = m.group(1), int(m.group(2))
    r = parse_time(os.path.join(d, "time.txt"))
    r["load_before"], r["load_samples"], r["others"] = loads(d)
    r["machine"] = machine_cpu(d)
    if c not in CONT and not c.startswith(OURS):
        continue
    if c.startswith("floor"):
        r["final"], r["sps"] = {}, []
    elif c.startswith(OURS):
        r["final"], r["sps"] = kl_info(d)
    else:
        r["final"], r["sps"], r["rem"] = olth_info(d)
    runs[(c, n)] = r

print("## per run")
for (c, n), r in sorted(runs.items(), key=lambda kv: (kv[0][1], order(kv[0][0]))):
    ls = r["load_samples"]
    fin = r["final"].get(3)
    print(f"{c}_{n}: exit {r['exit']} wall {r['wall']:.1f} s  cpu {r['cpu']:.1f} s (user {r['user']:.1f} sys {r['sys']:.1f})"
          f"  rss {r['rss_mib']:.0f} MiB  load before {r['load_before']:.2f}, 1-min load during "
          f"{min(ls) if ls else float('nan'):.2f}-{max(ls) if ls else float('nan'):.2f}"
          f"  steps/s {[round(x) for x in r['sps']]}  round-3 final test {fin}"
          + (f"  %remaining {r.get('rem')}" if 'rem' in r else "")
          + (f"  machine busy {r['machine'][0]:.1f} s (others ~{r['machine'][0] - r['cpu']:.1f} s) steal {r['machine'][1]:.1f} s"
             if r["machine"] else ""))
    if r["others"]:
        print("   other busy processes:", sorted(set(r["others"]))[:5])

print("\n## medians (min-max)")
def mm(xs):
    return f"{st.median(xs):.1f} ({min(xs):.1f}-{max(xs):.1f})"
for c in sorted({c for c, _ in runs}, key=order):
    rs = [runs[k] for k in sorted(runs) if k[0] == c]
    if not rs:
        continue
    sps = [st.mean(r["sps"]) for r in rs if r["sps"]]
    print(f"{c}: n={len(rs)} wall {mm([r['wall'] for r in rs])}  cpu {mm([r['cpu'] for r in rs])}"
          f"  rss MiB {mm([r['rss_mib'] for r in rs])}  mean steps/s per run {mm(sps) if sps else '-'}")

print("\n## paired ratios (same round number)")
for a, b in [(k, o) for o in ("olth100", "olthdefault")
             for k in sorted({c for c, _ in runs if c.startswith(OURS)}, key=order)]:
    ns = sorted(n for (c, n) in runs if c == a and (b, n) in runs)
    if not ns:
        continue
    for key in ("wall", "cpu", "rss_mib"):
        rat = [runs[(a, n)][key] / runs[(b, n)][key] for n in ns]
        print(f"{a}/{b} {key}: median {st.median(rat):.3f}  pairs {[round(x, 3) for x in rat]}")

ns = sorted(n for (c, n) in runs if c == "kl_tf" and ("kl_tf_base", n) in runs)
if ns:
    print("\n## the preset command against KL_BASE_SRC's (same round number)")
    for key in ("wall", "cpu", "rss_mib"):
        rat = [runs[("kl_tf", n)][key] / runs[("kl_tf_base", n)][key] for n in ns]
        print(f"kl_tf/kl_tf_base {key}: median {st.median(rat):.3f}  pairs {[round(x, 3) for x in rat]}")

print("\n## final test accuracy by round (kl: 'test acc final' column; olth: last test eval of the level)")
for (c, n), r in sorted(runs.items(), key=lambda kv: (order(kv[0][0]), kv[0][1])):
    print(f"{c}_{n}: {r['final']}")
