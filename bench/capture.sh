#!/usr/bin/env bash
# bench/capture.sh -- what `plexus capture` costs the traffic it watches
# (docs/observe.md): an iperf3 TCP stream between two sandboxes of one
# network, with nobody capturing, with a capture written to /dev/null (a
# reader that keeps up), and with a capture whose reader never reads (its
# pipe fills, the daemon's queue fills, copies are dropped and counted).
#
# Topology (built fresh, removed on exit; names prefixed cpb):
#   netns cpbH "host": the Plexus daemon, network cpbnet 10.95.0.0/24,
#   sandboxes c1 (iperf3 client) and c2 (iperf3 server), veth endpoints.
# Pinning: iperf3 client and server on CPU 0, the daemon on CPU 1.
# Each case runs REPS times, interleaved (none, stuck, fast, none, ...), DUR
# seconds each after a 1 s warm-up; the table shows min / median / max Gbit/s
# and, for the stuck reader, the copies the daemon dropped (from its log).
# Needs root, iperf3, and the release binary: cargo build --release --bin plexus
#
# Usage: bench/capture.sh [PLEXUS_BIN] [DUR] [REPS]
#   ONLY_NONE=1: only the runs without capture (is the path itself steady?)

set -u -o pipefail
BIN=$(readlink -f "${1:-target/release/plexus}")
DUR=${2:-5}
REPS=${3:-3}
H=cpbH
die() { echo "capture.sh: $*" >&2; exit 1; }
[ "$(id -u)" = 0 ] || die "run as root"
[ -x "$BIN" ] || die "no binary $BIN (cargo build --release --bin plexus)"
command -v iperf3 >/dev/null || die "no iperf3"
[ "$(nproc)" -ge 2 ] || die "needs 2 CPUs (traffic on 0, the switch on 1)"
[ -e /run/netns/$H ] && die "netns $H exists (another run?)"

WORK=$(mktemp -d /tmp/plexus-capture-bench.XXXXXX)
export PLEXUS_STATE_DIR=$WORK/state PLEXUS_NETNS_PREFIX=cpb- PLEXUS_IFNAME_PREFIX=cpb
mkdir -p "$PLEXUS_STATE_DIR"
SOCK=$WORK/s.sock
DPID= SPID=
px() { "$BIN" --socket "$SOCK" "$@"; }
cleanup() {
  [ -n "$SPID" ] && kill "$SPID" 2>/dev/null
  if [ -n "$DPID" ]; then
    px sandbox rm c1 >/dev/null 2>&1; px sandbox rm c2 >/dev/null 2>&1
    px network rm cpbnet >/dev/null 2>&1
    kill "$DPID" 2>/dev/null; wait "$DPID" 2>/dev/null
  fi
  ip netns del $H 2>/dev/null
  rm -rf "$WORK"
}
trap cleanup EXIT

ip netns add $H
ip -n $H link set lo up
nsenter --net=/run/netns/$H taskset -c 1 "$BIN" daemon --socket "$SOCK" >"$WORK/daemon.log" 2>&1 &
DPID=$!
for _ in $(seq 50); do [ -S "$SOCK" ] && break; sleep 0.1; done
[ -S "$SOCK" ] || die "the daemon did not start: $(cat "$WORK/daemon.log")"
px network create --subnet 10.95.0.0/24 cpbnet >/dev/null || die "network create"
px run --network cpbnet c1 >/dev/null || die "run c1"
px run --network cpbnet c2 >/dev/null || die "run c2"
nsenter --net=/run/netns/cpb-c2 taskset -c 0 iperf3 -s -D -I "$WORK/iperf.pid" >/dev/null
sleep 0.5
SPID=$(cat "$WORK/iperf.pid")

# One run: Gbit/s received.
stream() {
  nsenter --net=/run/netns/cpb-c1 taskset -c 0 iperf3 -c 10.95.0.3 -t "$DUR" -O 1 -J 2>/dev/null |
    python3 -c 'import json,sys
try: print("%.2f" % (json.load(sys.stdin)["end"]["sum_received"]["bits_per_second"]/1e9))
except Exception as e: print("nan"); print("iperf3 failed:", e, file=sys.stderr)'
}

declare -A R=([none]= [fast]= [stuck]=)
DROPS=()
for rep in $(seq "$REPS"); do
  R[none]+="$(stream) "
  [ -n "${ONLY_NONE:-}" ] && continue
  # The stuck reader: capture's stdout is a pipe to a process that never reads.
  mkfifo "$WORK/fifo.$rep"
  sleep 3600 <"$WORK/fifo.$rep" &
  SL=$!
  "$BIN" --socket "$SOCK" capture --network cpbnet -w - >"$WORK/fifo.$rep" 2>/dev/null &
  CP=$!; sleep 0.3
  R[stuck]+="$(stream) "
  kill $CP 2>/dev/null; wait $CP 2>/dev/null; kill $SL 2>/dev/null; wait $SL 2>/dev/null
  sleep 0.5
  DROPS+=("$(grep -o 'capture ended: [0-9]* frames, [0-9]* dropped' "$WORK/daemon.log" | tail -1)")
  # (The binary itself in the background, not the px function: $! must be
  # the capture's pid, or the kill below would miss it.)
  "$BIN" --socket "$SOCK" capture --network cpbnet -w /dev/null 2>/dev/null &
  CP=$!; sleep 0.3
  R[fast]+="$(stream) "
  kill $CP 2>/dev/null; wait $CP 2>/dev/null
  sleep 1
done

stats() { tr ' ' '\n' | grep . | sort -n | awk '{a[NR]=$1} END {printf "%s / %s / %s", a[1], a[int((NR+1)/2)], a[NR]}'; }
med() { tr ' ' '\n' | grep . | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
base=$(echo "${R[none]}" | med)
echo "capture cost, iperf3 c1 -> c2 (TCP, default offloads), $DUR s x $REPS, Gbit/s min / median / max"
printf '%-34s %-22s %s\n' case Gbit/s "median / no capture"
for c in none fast stuck; do
  m=$(echo "${R[$c]}" | med)
  printf '%-34s %-22s %s\n' "$c" "$(echo "${R[$c]}" | stats)" "$(python3 -c "print('%.2f' % ($m/$base))")"
done
echo "stuck reader, daemon's account per run: ${DROPS[*]}"
echo "runs in order: none ${R[none]}| fast ${R[fast]}| stuck ${R[stuck]}"
