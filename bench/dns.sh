#!/usr/bin/env bash
# bench/dns.sh -- the gateways' DNS (docs/dns.md) under dnsperf, beside
# aardvark-dns (Podman's resolver) and dnsmasq serving the same names.
#
# Topology (built fresh, removed on exit; names prefixed dnb):
#   netns dnbO "outside":  198.18.49.2/24   dnsmasq, the upstream: zone.test
#   netns dnbH "host":     198.18.49.1/24   the Plexus daemon (--dns-upstream 198.18.49.2)
#     network dnbnet 10.96.0.0/24 (gateway 10.96.0.1: the switch's DNS server),
#     sandboxes cli (10.96.0.2, the client) and c1..c5 (10.96.0.11-15), alias webN
#     each: 10 local names. Veth endpoints (the default).
#   netns dnbS "server":   10.97.0.1/24     aardvark-dns on :53 and dnsmasq on :5300,
#                                           both serving c1..c5 / web1..web5 (10.97.0.11-15)
#   netns dnbC "client":   10.97.0.2/24     dnsperf for those two (veth dnbS <-> dnbC)
# Paths (dnsperf pinned to CPU 0; every server -- the Plexus daemon, aardvark-dns,
# both dnsmasqs -- to CPU 1):
#   px-local   sandbox cli -> gateway, the 10 local names
#   px-fwd     sandbox cli -> gateway -> dnsmasq upstream, 10 names of zone.test with
#              TTL 3600: cached after the first answer of each
#   px-fwd-ttl0   same, 10 names with TTL 0: never cached, every query forwarded
#   px-fwd-20k    same, 20000 names (TTL 3600) in turn: more than the 4096-entry
#              cache, so every query misses and every answer stored evicts one
#   up-direct  dnsmasq upstream asked directly from dnbH (the daemon's namespace):
#              what the forwarder's upstream can do on its own
#   aardvark   dnbC -> aardvark-dns in dnbS, the 10 names (the client's address is
#              listed as a container of the network: aardvark answers containers only)
#   dnsmasq    dnbC -> dnsmasq in dnbS (authoritative --host-record), the 10 names
# Each path gets a 2 s warm-up (not counted), then is measured twice with the
# same dnsperf settings for all:
#   max rate:  -c 1 -q 100 -l DUR (-S 1): one socket (one container), 100 queries in
#              flight (dnsperf's default; under Plexus' 128 forwarded per endpoint)
#   fixed:     -c 1 -q 100 -Q 2000 -l LAT_DUR: a rate every server keeps up with,
#              so the latency is the server's and the path's, not a queue's
# A-record queries only, no EDNS. CPU: utime+stime of the server process(es)
# during the max-rate run; busy %: CPU 0 (client) / CPU 1 (servers) then.
# Needs root, dnsperf, dnsmasq, aardvark-dns, dig, and the release binary:
#   cargo build --release --bin plexus
#
# Usage: bench/dns.sh [PLEXUS_BIN] [DUR] [LAT_DUR]
#   DNB_HOLD=SECS keeps everything up that long after the table (to inspect).

set -u -o pipefail
BIN=$(readlink -f "${1:-target/release/plexus}")
DUR=${2:-10}
LAT_DUR=${3:-5}
H=dnbH O=dnbO S=dnbS C=dnbC
HIP=198.18.49.1 OIP=198.18.49.2 SIP=10.97.0.1 CIP=10.97.0.2
NET=dnbnet PXSUB=10.96.0
NAMES=5 # containers; each also has an alias: 2x names
die() { echo "dns.sh: $*" >&2; exit 1; }
[ "$(id -u)" = 0 ] || die "run as root"
[ -x "$BIN" ] || die "no binary $BIN (cargo build --release --bin plexus)"
DNSPERF=$(command -v dnsperf) || die "no dnsperf"
DNSMASQ=$(command -v dnsmasq || echo /usr/sbin/dnsmasq); [ -x "$DNSMASQ" ] || die "no dnsmasq"
AARDVARK=/usr/lib/podman/aardvark-dns; [ -x $AARDVARK ] || AARDVARK=$(command -v aardvark-dns) || die "no aardvark-dns"
command -v dig >/dev/null || die "no dig"
[ "$(nproc)" -ge 2 ] || die "needs 2 CPUs (client on 0, servers on 1)"
for ns in $H $O $S $C; do [ -e /run/netns/$ns ] && die "netns $ns exists (another run?)"; done
ls /run/netns/dnb-* >/dev/null 2>&1 && die "netns dnb-* exist (another run?)"

T0=$(date +%s)
T=$(mktemp -d /tmp/dnb.XXXXXX)
PX_PID="" UP_PID="" DM_PID="" AV_PID="" HOLD_PID=""

# Waits up to $2 s for process $1 to exit after SIGTERM, then SIGKILLs it (our
# children are reaped; aardvark-dns forks away from us, so it is polled).
stop_pid() {
  local pid=$1 secs=$2 i st
  kill -TERM "$pid" 2>/dev/null || return 0
  for i in $(seq $((secs * 10))); do
    st=$(ps -o stat= -p "$pid" 2>/dev/null) || break
    case $st in Z*) break ;; esac
    sleep 0.1
  done
  kill -KILL "$pid" 2>/dev/null
  wait "$pid" 2>/dev/null
}

px() { timeout 60 env PLEXUS_SOCKET=$T/plexus.sock "$BIN" "$@"; }

cleanup() {
  set +e
  trap - EXIT INT TERM
  [ -n "$HOLD_PID" ] && kill "$HOLD_PID" 2>/dev/null
  if [ -n "$PX_PID" ] && kill -0 "$PX_PID" 2>/dev/null; then
    for sb in cli $(seq -f 'c%g' 1 $NAMES); do px sandbox rm "$sb" >/dev/null 2>&1; done
    px network rm $NET >/dev/null 2>&1
    stop_pid "$PX_PID" 10
  fi
  for p in "$AV_PID" "$DM_PID" "$UP_PID"; do [ -n "$p" ] && stop_pid "$p" 5; done
  for ns in /run/netns/dnb-*; do [ -e "$ns" ] && ip netns del "${ns#/run/netns/}"; done
  for ns in $C $S $O $H; do ip netns del $ns 2>/dev/null; done
  rm -rf "$T"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

inH() { ip netns exec $H "$@"; }
inO() { ip netns exec $O "$@"; }
inS() { ip netns exec $S "$@"; }
inC() { ip netns exec $C "$@"; }

# --- namespaces ------------------------------------------------------------
veth() { # veth NS_A IF_A ADDR_A NS_B IF_B ADDR_B
  ip -n "$1" link add "$2" type veth peer name "$5" netns "$4"
  ip -n "$1" addr add "$3/24" dev "$2"; ip -n "$4" addr add "$6/24" dev "$5"
  ip -n "$1" link set "$2" up; ip -n "$4" link set "$5" up
}
for ns in $H $O $S $C; do ip netns add $ns && ip -n $ns link set lo up || die "netns $ns"; done
veth $H dnbho $HIP $O dnboh $OIP || die "veth $H-$O"
veth $S dnbsc $SIP $C dnbcs $CIP || die "veth $S-$C"

# --- query files -------------------------------------------------------------
Q=$T/q; mkdir -p "$Q"
LOCAL_NAMES=$(for i in $(seq $NAMES); do echo "c$i web$i"; done)
for n in $LOCAL_NAMES; do echo "$n A"; done >"$Q/local"
for i in $(seq 10); do echo "www$i.zone.test A"; done >"$Q/fwd"
for i in $(seq 10); do echo "nc$i.zone.test A"; done >"$Q/ttl0"
awk 'BEGIN { for (i = 0; i < 20000; i++) printf "n%05d.zone.test A\n", i }' >"$Q/20k"

# --- the upstream: dnsmasq in dnbO (CPU 1) -----------------------------------
# www1-10 TTL 3600 (--local-ttl), nc1-10 TTL 0, n00000-n19999 from a hosts file
# (TTL 3600); anything else in zone.test NXDOMAIN; nothing forwarded.
awk 'BEGIN { for (i = 0; i < 20000; i++) printf "198.51.%d.%d n%05d.zone.test\n", 100 + int(i / 250), 1 + i % 250, i }' >"$T/zone.hosts"
UPARGS=(--no-daemon --no-resolv --no-hosts --conf-file=/dev/null --bind-interfaces --user=root
  --listen-address=$OIP --port=53 --local=/zone.test/ --local-ttl=3600 --addn-hosts="$T/zone.hosts"
  --pid-file="$T/up.pid" --log-facility="$T/up.log")
for i in $(seq 10); do UPARGS+=(--host-record=www$i.zone.test,203.0.113.$i --host-record=nc$i.zone.test,203.0.113.$((100 + i)),0); done
ip netns exec $O taskset -c 1 "$DNSMASQ" "${UPARGS[@]}" </dev/null >/dev/null 2>&1 &
UP_PID=$!
sleep 0.2; [ "$(cat /proc/$UP_PID/comm 2>/dev/null)" = dnsmasq ] || die "upstream dnsmasq did not start"

# --- Plexus daemon (dnbH, CPU 1) ---------------------------------------------
mkdir -p "$T/plexus"
nsenter --net=/run/netns/$H taskset -c 1 env PLEXUS_IFNAME_PREFIX=dnb PLEXUS_NETNS_PREFIX=dnb- \
  "$BIN" daemon --state-dir "$T/plexus" --socket "$T/plexus.sock" --dns-upstream $OIP \
  </dev/null >"$T/plexus.log" 2>&1 &
PX_PID=$!
for _ in $(seq 100); do px info >/dev/null 2>&1 && break; sleep 0.1; done
px info >/dev/null 2>&1 || { cat "$T/plexus.log"; die "the Plexus daemon did not start"; }
px network create --subnet $PXSUB.0/24 $NET >/dev/null || die "network create"
px run --network $NET --ip $PXSUB.2 cli >/dev/null || die "run cli"
for i in $(seq $NAMES); do
  px run --network $NET --ip $PXSUB.$((10 + i)) --alias web$i c$i >/dev/null || die "run c$i"
done
GW=$(px exec cli -- awk '/^nameserver/ { print $2; exit }' /etc/resolv.conf)
[ -n "$GW" ] || die "no nameserver in cli's resolv.conf"

# --- aardvark-dns and dnsmasq in dnbS (CPU 1) --------------------------------
# aardvark-dns: one file per network: "GATEWAY", then "ID IPV4 IPV6 NAMES"; it
# forks and leaves its pid in DIR/aardvark.pid. Its upstream (for other names)
# would be the host's resolv.conf: never asked here.
mkdir -p "$T/aardvark"
{
  echo $SIP
  printf '%064x %s  cli\n' 1 $CIP
  for i in $(seq $NAMES); do printf '%064x 10.97.0.%d  c%d,web%d\n' $((i + 1)) $((10 + i)) "$i" "$i"; done
} >"$T/aardvark/dnb"
inS taskset -c 1 "$AARDVARK" --config "$T/aardvark" -p 53 run </dev/null >"$T/aardvark.log" 2>&1
for _ in $(seq 50); do [ -s "$T/aardvark/aardvark.pid" ] && break; sleep 0.1; done
AV_PID=$(cat "$T/aardvark/aardvark.pid" 2>/dev/null)
[ -n "$AV_PID" ] || { cat "$T/aardvark.log"; die "aardvark-dns did not start"; }
DMARGS=(--no-daemon --no-resolv --no-hosts --conf-file=/dev/null --bind-interfaces --user=root
  --listen-address=$SIP --port=5300 --local-ttl=600 --pid-file="$T/dm.pid" --log-facility="$T/dm.log")
for i in $(seq $NAMES); do DMARGS+=(--host-record=c$i,web$i,10.97.0.$((10 + i))); done
ip netns exec $S taskset -c 1 "$DNSMASQ" "${DMARGS[@]}" </dev/null >/dev/null 2>&1 &
DM_PID=$!
sleep 0.2; [ "$(cat /proc/$DM_PID/comm 2>/dev/null)" = dnsmasq ] || die "dnsmasq did not start"

# --- every server answers what it should ---------------------------------------
# check LABEL EXPECTED CMD...: CMD is a dig +short; EXPECTED its first line.
check() {
  local label=$1 want=$2 got i; shift 2
  for i in $(seq 30); do
    got=$("$@" 2>/dev/null | head -1)
    [ "$got" = "$want" ] && return 0
    sleep 0.2
  done
  die "$label: wanted $want, got '${got}'"
}
D="dig +short +time=1 +tries=1"
check "upstream www3" 203.0.113.3 inH $D @$OIP www3.zone.test
check "upstream n12345" 198.51.149.96 inH $D @$OIP n12345.zone.test
check "plexus web4" $PXSUB.14 px exec cli -- $D web4
check "plexus fwd www3" 203.0.113.3 px exec cli -- $D www3.zone.test
check "plexus fwd nc2" 203.0.113.102 px exec cli -- $D nc2.zone.test
check "aardvark web4" 10.97.0.14 inC $D @$SIP web4
check "dnsmasq web4" 10.97.0.14 inC $D @$SIP -p 5300 web4
TTL0=$(inH dig +noall +answer @$OIP nc1.zone.test | awk '{ print $2 }')
[ "$TTL0" = 0 ] || die "upstream nc1.zone.test has TTL '$TTL0', not 0"

# --- measuring ---------------------------------------------------------------
HZ=$(getconf CLK_TCK)
cputime() { local p s=0; for p in "$@"; do s=$((s + $(sed 's/.*) //' /proc/$p/stat | awk '{ print $12 + $13 }'))); done; echo $s; }
cpus() { awk '/^cpu[01] / { printf "%s ", $2 + $3 + $4 + $7 + $8 + $9 + $10 }' /proc/stat; }
# dnsperf output -> "QPS AVG_MS MIN_MS MAX_MS LOST SENT RCODES RESP_BYTES RUN_S MEDIAN_1S_QPS"
parse() {
  awk '/^[0-9]+\.[0-9]+: [0-9.]+$/ { iv[n++] = $2 + 0 }
    /Run time/ { run = $4 }
    /Queries sent:/ { sent = $3 }
    /Queries lost:/ { lost = $3 }
    /Response codes:/ { sub(/.*Response codes: */, ""); gsub(/ /, "_"); rc = $0 }
    /Average packet size:/ { resp = $NF }
    /Queries per second:/ { qps = $4 }
    /Average Latency/ { avg = $4; min = $6; max = $8; gsub(/[(),]/, "", min); gsub(/[(),]/, "", max) }
    END {
      # median of the per-second rates (-S 1), the first and last second left out
      m = 0; for (i = 1; i < n - 1; i++) v[m++] = iv[i]
      for (i = 0; i < m; i++) for (j = i + 1; j < m; j++) if (v[j] < v[i]) { t = v[i]; v[i] = v[j]; v[j] = t }
      med = m ? (m % 2 ? v[int(m / 2)] : (v[m / 2 - 1] + v[m / 2]) / 2) : -1
      printf "%.0f %.3f %.3f %.3f %d %d %s %s %.1f %s\n", qps, avg * 1000, min * 1000, max * 1000, lost, sent,
        (rc == "" ? "none" : rc), (resp == "" ? "-" : resp), run, (med < 0 ? "-" : sprintf("%.0f", med))
    }'
}
declare -A R
# measure ROW "SERVER_PIDS" RUNNER...: RUNNER FLAGS runs dnsperf with FLAGS.
measure() {
  local row=$1 pids=$2 c0 c1 b0 b1 p0 p1 t0 t1 out; shift 2
  # Warm-up, not counted: the first seconds after setup are slower (seen on
  # the first path measured, whichever it was).
  "$@" -c 1 -q 100 -l 2 >/dev/null 2>&1
  c0=$(cputime $pids); read -r b0 p0 <<<"$(cpus)"; t0=$(date +%s.%N)
  out=$("$@" -c 1 -q 100 -l "$DUR" -S 1 2>&1)
  c1=$(cputime $pids); read -r b1 p1 <<<"$(cpus)"; t1=$(date +%s.%N)
  echo "$out" >"$T/$row.max"
  R[$row,max]=$(parse <"$T/$row.max")
  R[$row,cpu]=$(awk -v a="$c0" -v b="$c1" -v hz="$HZ" 'BEGIN { printf "%.1f", (b - a) / hz }')
  # Over the whole dnsperf run: -l DUR, then up to its 5 s timeout for
  # answers still outstanding.
  R[$row,busy]=$(awk -v a="$b0" -v b="$b1" -v c="$p0" -v d="$p1" -v hz="$HZ" -v t0="$t0" -v t1="$t1" \
    'BEGIN { t = t1 - t0; printf "%.0f/%.0f %% of %.1fs", 100 * (b - a) / hz / t, 100 * (d - c) / hz / t, t }')
  out=$("$@" -c 1 -q 100 -Q 2000 -l "$LAT_DUR" 2>&1)
  echo "$out" >"$T/$row.fix"
  R[$row,fix]=$(parse <"$T/$row.fix")
  printf '  %-12s done: %s\n' "$row" "$(cut -d' ' -f1 <<<"${R[$row,max]}") q/s" >&2
}
pxperf() { taskset -c 0 env PLEXUS_SOCKET=$T/plexus.sock "$BIN" exec cli -- "$DNSPERF" -s "$GW" "$@"; }
hperf() { inH taskset -c 0 "$DNSPERF" -s $OIP "$@"; }
cperf() { inC taskset -c 0 "$DNSPERF" -s $SIP "$@"; }

echo "measuring (${DUR}s max rate + ${LAT_DUR}s at 2000 q/s per path) ..." >&2
measure px-local "$PX_PID" pxperf -d "$Q/local"
measure px-fwd "$PX_PID $UP_PID" pxperf -d "$Q/fwd"
measure px-fwd-ttl0 "$PX_PID $UP_PID" pxperf -d "$Q/ttl0"
measure px-fwd-20k "$PX_PID $UP_PID" pxperf -d "$Q/20k"
measure up-direct "$UP_PID" hperf -d "$Q/fwd"
measure aardvark "$AV_PID" cperf -d "$Q/local"
measure dnsmasq "$DM_PID" cperf -p 5300 -d "$Q/local"
PX_TOTAL=$(awk -v t="$(cputime "$PX_PID")" -v hz="$HZ" 'BEGIN { printf "%.1f", t / hz }')

ROWS=(px-local aardvark dnsmasq px-fwd px-fwd-ttl0 px-fwd-20k up-direct)
declare -A LABEL=(
  [px-local]="Plexus gateway, local names (sandbox -> $GW)"
  [aardvark]="aardvark-dns $("$AARDVARK" --version 2>/dev/null | awk '{ print $2 }'), same names (netns -> $SIP:53)"
  [dnsmasq]="dnsmasq $("$DNSMASQ" --version | awk 'NR == 1 { print $3 }'), same names (netns -> $SIP:5300)"
  [px-fwd]="Plexus gateway, forwarded, 10 names TTL 3600 (cached)"
  [px-fwd-ttl0]="Plexus gateway, forwarded, 10 names TTL 0 (no cache)"
  [px-fwd-20k]="Plexus gateway, forwarded, 20000 names (cache misses, full cache)"
  [up-direct]="upstream dnsmasq asked directly from the daemon's netns"
)
declare -A CPUWHO=([px-local]=plexus [aardvark]=aardvark [dnsmasq]=dnsmasq [px-fwd]="plexus+up"
  [px-fwd-ttl0]="plexus+up" [px-fwd-20k]="plexus+up" [up-direct]=up)
echo
echo "dnsperf $("$DNSPERF" -h 2>&1 | awk '/^Version/ { print $2 }'), $(nproc) CPUs ($(uname -r)); client on CPU 0, servers on CPU 1."
echo "max rate: dnsperf -c 1 -q 100 -l $DUR; fixed: -c 1 -q 100 -Q 2000 -l $LAT_DUR. A queries, no EDNS."
echo "queries/s: dnsperf's (completed / its run time, which includes waiting for the last answers);"
echo "median 1-s q/s: median of its per-second rates (-S 1), first and last second left out."
echo "latency in ms: avg at max rate (queueing included) | avg (min-max) at 2000 q/s."
echo "server CPU-s: utime+stime of the server process(es) during the ${DUR}s max-rate run;"
echo "busy %: CPU 0 / CPU 1 during it. resp B: dnsperf's average response size (an A answer > 28+question)."
echo
echo "| server/path | queries/s | median 1-s q/s | avg latency at max rate | latency at 2000 q/s | lost/errors | server CPU-s | notes |"
echo "|---|---|---|---|---|---|---|---|"
for r in "${ROWS[@]}"; do
  read -r qps avg _ mx lost sent rc resp run med <<<"${R[$r,max]}"
  read -r fqps favg fmin fmax flost fsent frc _ <<<"${R[$r,fix]}"
  err="$lost/$sent lost"
  [ "$flost" != 0 ] && err="$err; at 2k: $flost/$fsent lost"
  # Anything but all NOERROR is shown.
  case $rc in NOERROR_*_\(100.00%\)) ;; *) err="$err; codes: ${rc//_/ }" ;; esac
  case $frc in NOERROR_*_\(100.00%\)) ;; *) err="$err; at 2k codes: ${frc//_/ }" ;; esac
  note="busy ${R[$r,busy]}, resp ${resp} B"
  # dnsperf's rate divides by its whole run, including the wait for the last
  # answers: a long wait shows here.
  awk -v r="$run" -v d="$DUR" 'BEGIN { exit !(r > d + 0.5) }' && note="$note; dnsperf ran ${run}s for -l $DUR (max latency ${mx} ms)"
  echo "| ${LABEL[$r]} | $qps | $med | $avg ms | $favg ms ($fmin-$fmax) | $err | ${R[$r,cpu]} (${CPUWHO[$r]}) | $note |"
done
echo
echo "Plexus daemon CPU time, whole run: ${PX_TOTAL} s; run took $(($(date +%s) - T0)) s (before cleanup)"
echo
echo "Plexus switch counters after the run (plexus stats):"
px stats 2>&1 | sed 's/^/  /'
n=$(grep -cE ': (warning|error): ' "$T/plexus.log")
echo "Plexus daemon log: $n warnings/errors"
grep -E ': (warning|error): ' "$T/plexus.log" | head -5 | sed 's/^/  /'
if [ -n "${DNB_HOLD:-}" ]; then
  echo "holding ${DNB_HOLD}s before cleanup: PLEXUS_SOCKET=$T/plexus.sock, dnsperf outputs in $T"
  sleep "$DNB_HOLD" &
  HOLD_PID=$!
  wait $HOLD_PID # a signal ends the wait (and the run) at once
fi
