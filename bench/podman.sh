#!/usr/bin/env bash
# bench/podman.sh -- Podman containers on a Plexus network (plexus-cni) beside
# Podman's own CNI bridge network (the kernel bridge, `bridge` + `host-local`
# plugins), one Podman, one image, one run: container -> container TCP
# (iperf3, default offloads) and ping RTT.
#
# Everything lives in a namespace made here (pdbH: the daemon, Podman, its
# bridge and any rules the plugins add) and a temp dir; removed on exit.
# iperf3 and ping run from here inside the containers' network namespaces
# (nsenter --net=SandboxKey), so the image needs nothing but busybox.
# Pinning: client and server on CPU 0, the Plexus daemon on CPU 1.
# Needs root, podman (4.x, CNI backend), containernetworking-plugins, iperf3,
# busybox-static and the release binary: cargo build --release --bin plexus
#
# Usage: bench/podman.sh [PLEXUS_BIN] [DUR]

set -u -o pipefail
BIN=$(readlink -f "${1:-target/release/plexus}")
DUR=${2:-5}
H=pdbH
die() { echo "podman.sh: $*" >&2; exit 1; }
[ "$(id -u)" = 0 ] || die "run as root"
[ -x "$BIN" ] || die "no binary $BIN (cargo build --release --bin plexus)"
for c in podman iperf3 nsenter; do command -v $c >/dev/null || die "no $c"; done
[ -x /usr/lib/cni/bridge ] || die "no CNI plugins (containernetworking-plugins)"
BUSYBOX=/bin/busybox; [ -x $BUSYBOX ] || die "no /bin/busybox (busybox-static)"
[ -e /run/netns/$H ] && die "netns $H exists (another run?)"

# Podman writes these outside its root: removed afterwards if they were not here.
SHARED=()
for d in /var/lib/cni /var/lib/containers /run/runc; do [ -e $d ] || SHARED+=($d); done
T=$(mktemp -d /tmp/plexus-podman-bench.XXXXXX)
export PLEXUS_STATE_DIR=$T/state PLEXUS_NETNS_PREFIX=pdb- PLEXUS_IFNAME_PREFIX=pdb
SOCK=$T/s.sock
DPID=
mkdir -p "$T"/{state,root,run,tmp,cni.d,bin,rootfs/bin}
ln -s "$BIN" "$T/bin/plexus-cni"
for p in bridge host-local loopback; do ln -s /usr/lib/cni/$p "$T/bin/$p"; done
cat >"$T/containers.conf" <<EOF
[containers]
default_ulimits = ["nofile=1024:1024", "nproc=4096:4096"]
[network]
network_backend = "cni"
cni_plugin_dirs = ["$T/bin"]
network_config_dir = "$T/cni.d"
[engine]
cgroup_manager = "cgroupfs"
events_logger = "file"
events_logfile_path = "$T/events.log"
tmp_dir = "$T/tmp"
lock_type = "file"
enable_port_reservation = false
EOF
export CONTAINERS_CONF=$T/containers.conf TMPDIR=$T/tmp
pm() { nsenter --net=/run/netns/$H podman --root "$T/root" --runroot "$T/run" --storage-driver vfs "$@"; }
cleanup() {
  pm rm -af -t 0 >/dev/null 2>&1
  if [ -n "$DPID" ]; then
    kill "$DPID" 2>/dev/null; wait "$DPID" 2>/dev/null
  fi
  ip netns del $H 2>/dev/null
  rm -rf /var/lib/cni/networks/pdbpx /var/lib/cni/networks/pdbbr /var/lib/cni/results/pdb*
  grep -o " $T/[^ ]*" /proc/mounts | sort -r | while read -r m; do umount "$m" 2>/dev/null; done
  rm -rf "$T"
  for d in "${SHARED[@]}"; do rm -rf "$d"; done
}
trap cleanup EXIT

ip netns add $H
ip -n $H link set lo up
nsenter --net=/run/netns/$H taskset -c 1 "$BIN" daemon --socket "$SOCK" >"$T/daemon.log" 2>&1 &
DPID=$!
for _ in $(seq 50); do [ -S "$SOCK" ] && break; sleep 0.1; done
[ -S "$SOCK" ] || die "the daemon did not start: $(cat "$T/daemon.log")"

cat >"$T/cni.d/pdbpx.conflist" <<EOF
{"cniVersion": "1.0.0", "name": "pdbpx", "plugins": [
  {"type": "plexus-cni", "subnet": "10.77.0.0/24", "socket": "$SOCK", "capabilities": {"portMappings": true}}]}
EOF
cat >"$T/cni.d/pdbbr.conflist" <<EOF
{"cniVersion": "1.0.0", "name": "pdbbr", "plugins": [
  {"type": "bridge", "bridge": "pdbbr0", "isGateway": true, "ipMasq": false, "hairpinMode": true,
   "ipam": {"type": "host-local", "routes": [{"dst": "0.0.0.0/0"}], "ranges": [[{"subnet": "10.78.0.0/24"}]]}}]}
EOF
cp "$BUSYBOX" "$T/rootfs/bin/busybox"
for a in sh sleep; do ln -s busybox "$T/rootfs/bin/$a"; done
tar -C "$T/rootfs" -cf "$T/rootfs.tar" . && pm import -q "$T/rootfs.tar" pdbbb >/dev/null || die "podman import"

echo "Podman $(podman --version | awk '{print $3}') containers, one run each, iperf3 ${DUR} s, ping 20 x 0.2 s"
printf '%-34s %-14s %-14s %s\n' network "TCP Gbit/s" "retransmits" "ping avg / min ms"
for net in pdbpx pdbbr; do
  pm run -d --network $net --name "$net-a" pdbbb sleep 1000 >/dev/null || die "run on $net"
  pm run -d --network $net --name "$net-b" pdbbb sleep 1000 >/dev/null || die "run on $net"
  A=$(pm inspect -f '{{.NetworkSettings.SandboxKey}}' "$net-a")
  B=$(pm inspect -f '{{.NetworkSettings.SandboxKey}}' "$net-b")
  BIP=$(pm inspect -f "{{(index .NetworkSettings.Networks \"$net\").IPAddress}}" "$net-b")
  nsenter --net="$B" taskset -c 0 iperf3 -s -D -1 -I "$T/iperf.$net" >/dev/null
  sleep 0.5
  nsenter --net="$A" ping -q -c 3 -i 0.2 "$BIP" >/dev/null
  J=$(nsenter --net="$A" taskset -c 0 iperf3 -c "$BIP" -t "$DUR" -O 1 -J 2>/dev/null)
  read -r GB RT < <(echo "$J" | python3 -c 'import json,sys
j=json.load(sys.stdin)["end"]; print("%.2f %d" % (j["sum_received"]["bits_per_second"]/1e9, j["sum_sent"].get("retransmits",0)))' 2>/dev/null || echo "nan nan")
  P=$(nsenter --net="$A" ping -q -c 20 -i 0.2 "$BIP" | awk '/^rtt/ {split($4, v, "/"); printf "%.3f / %.3f", v[2], v[1]}')
  label=$([ $net = pdbpx ] && echo "Plexus (plexus-cni)" || echo "kernel bridge (CNI bridge)")
  printf '%-34s %-14s %-14s %s\n' "$label" "$GB" "$RT" "$P"
done
