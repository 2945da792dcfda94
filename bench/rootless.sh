#!/usr/bin/env bash
# bench/rootless.sh -- rootless Plexus on the paths of ../shared/bench/publish.sh.
#
# Topology (built fresh, removed on exit; names prefixed rlb):
#   netns rlbO "outside": 198.18.47.2/24        (clients; outbound server)
#   netns rlbH "host":    198.18.47.1/24        (the rootless daemon's namespace)
#   the daemon runs as uid 65534 (setpriv, no capabilities) inside rlbH, with two
#   containers c1, c2 on 10.89.0.0/24 (TAP endpoints made inside their sandboxes);
#   c2 publishes 5201/tcp and 5202/udp on 198.18.47.1.
# Paths (iperf3, DUR seconds each; endpoints pinned to CPU 0, daemon to CPU 1):
#   c2c      c1 -> c2 TCP through the switch
#   out      c1 -> outside TCP (the daemon's own socket: outbound NAT)
#   in       outside -> 198.18.47.1:5201 -> c2 (published port)
#   pps      c1 -> c2 UDP, 64-byte payloads, receiver's packets per second
# Needs root (it drops to uid 65534 for the daemon), iperf3, setpriv, nsenter,
# and /dev/net/tun usable by every user.
#
# Usage: bench/rootless.sh [PLEXUS_BIN] [DUR]

set -u -o pipefail
BIN=$(readlink -f "${1:-target/release/plexus}")
DUR=${2:-5}
[ "$(id -u)" = 0 ] || { echo "rootless.sh: run as root (the daemon itself runs as uid 65534)" >&2; exit 1; }
[ -x "$BIN" ] || { echo "rootless.sh: no binary $BIN (cargo build --release)" >&2; exit 1; }

HOME_DIR=$(mktemp -d /tmp/rlb.XXXXXX)
DAEMON_PID=""
cleanup() {
  [ -n "$DAEMON_PID" ] && kill "$DAEMON_PID" 2>/dev/null && sleep 0.5
  if [ -f "$HOME_DIR/data/plexus/userns.pid" ]; then
    kill "$(cut -d' ' -f1 "$HOME_DIR/data/plexus/userns.pid")" 2>/dev/null
  fi
  ip netns del rlbH 2>/dev/null; ip netns del rlbO 2>/dev/null
  rm -rf "$HOME_DIR"
}
trap cleanup EXIT INT TERM

mkdir -p "$HOME_DIR/run" "$HOME_DIR/data"
chown -R 65534:65534 "$HOME_DIR"; chmod 700 "$HOME_DIR" "$HOME_DIR/run"
ip netns add rlbH; ip netns add rlbO
ip -n rlbH link add rlbho type veth peer name rlboh netns rlbO
ip -n rlbH addr add 198.18.47.1/24 dev rlbho; ip -n rlbO addr add 198.18.47.2/24 dev rlboh
for ns in rlbH rlbO; do ip -n $ns link set lo up; done
ip -n rlbH link set rlbho up; ip -n rlbO link set rlboh up

as_user() {
  setpriv --reuid 65534 --regid 65534 --clear-groups env -i PATH="$PATH" HOME="$HOME_DIR" \
    XDG_RUNTIME_DIR="$HOME_DIR/run" XDG_DATA_HOME="$HOME_DIR/data" "$@"
}
px() { as_user "$BIN" "$@"; }

nsenter --net=/run/netns/rlbH taskset -c 1 setpriv --reuid 65534 --regid 65534 --clear-groups env -i PATH="$PATH" \
  HOME="$HOME_DIR" XDG_RUNTIME_DIR="$HOME_DIR/run" XDG_DATA_HOME="$HOME_DIR/data" "$BIN" daemon \
  >"$HOME_DIR/daemon.log" 2>&1 &
DAEMON_PID=$!
for _ in $(seq 50); do [ -S "$HOME_DIR/run/plexus/plexus.sock" ] && break; sleep 0.1; done
px info | grep -E '^Mode' || { cat "$HOME_DIR/daemon.log"; exit 1; }
px network create --subnet 10.89.0.0/24 rlb >/dev/null
px run --network rlb c1 >/dev/null
px run --network rlb -p 198.18.47.1:5201:5201 -p 198.18.47.1:5202:5202/udp c2 >/dev/null

in_c() { local c=$1; shift; as_user taskset -c 0 "$BIN" exec "$c" -- "$@"; }
server() { in_c c2 iperf3 -s -1 -p "$1" >/dev/null 2>&1 & sleep 0.5; }
gbits() { python3 -c 'import json,sys; j=json.load(sys.stdin); print("%.2f" % (j["end"]["sum_received"]["bits_per_second"]/1e9))'; }

server 5201
C2C=$(in_c c1 iperf3 -c 10.89.0.3 -p 5201 -t "$DUR" -J | gbits)
ip netns exec rlbO iperf3 -s -1 -p 5203 -B 198.18.47.2 >/dev/null 2>&1 & sleep 0.5
OUT=$(in_c c1 iperf3 -c 198.18.47.2 -p 5203 -t "$DUR" -J | gbits)
server 5201
IN=$(ip netns exec rlbO taskset -c 0 iperf3 -c 198.18.47.1 -p 5201 -t "$DUR" -J | gbits)
server 5201
PPS=$(in_c c1 iperf3 -c 10.89.0.3 -p 5201 -u -b 0 -l 64 -t "$DUR" -J | python3 -c '
import json,sys; j=json.load(sys.stdin); s=j["end"]["sum"]
print("%.0fk" % ((s["packets"]-s["lost_packets"])/s["seconds"]/1000))')
echo
echo "| path | rootless plexus |"
echo "|---|---|"
echo "| container -> container TCP Gbit/s | $C2C |"
echo "| container -> outside TCP Gbit/s (outbound NAT) | $OUT |"
echo "| outside -> published port TCP Gbit/s | $IN |"
echo "| container -> container UDP 64 B, received pps | $PPS |"
