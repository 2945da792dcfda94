#!/usr/bin/env bash
# bench/docker.sh -- Docker on Plexus (`plexus daemon --docker-plugin`) side by
# side with Docker's own networking: one dockerd, one image, one run.
#
# Topology (built fresh, removed on exit; names prefixed pxb):
#   netns pxbO "outside": 198.18.48.2/24        (clients of the published ports)
#   netns pxbH "host":    198.18.48.1/24        (dockerd AND the Plexus daemon)
#   dockerd (Debian docker.io 20.10, private data/exec roots, --iptables=true,
#   userland proxy on, its default) runs in pxbH with the cgroup workaround of
#   ../shared/research/engines.md; its bridge and iptables rules live in pxbH.
#   Two networks of that dockerd, each with a server container (iperf3 -s on
#   5201 + addr_echo 7001) and a client container (sleep):
#     Plexus:        docker network create -d PLUGIN --ipam-driver PLUGIN (10.91.0.0/24),
#                    server publishes 5201, 7001 (the switch binds them)
#     Docker bridge: user-defined bridge network (10.92.0.0/24, kernel bridge +
#                    iptables), server publishes 5202->5201, 7002->7001 (iptables DNAT)
#                    and 5203->5201, 7003->7001 (docker-proxy: one RETURN rule ahead of
#                    Docker's DNAT in pxbH's nat PREROUTING sends them to docker-proxy,
#                    the path --iptables=false or a loopback client takes)
# Paths (containers pinned to CPU 0 with --cpuset-cpus; outside/host clients to
# CPU 0; the Plexus daemon and dockerd -- hence docker-proxy -- to CPU 1):
#   c2c      client container -> server container, iperf3 TCP DUR s; busybox ping RTT
#   pub      outside -> 198.18.48.1:PORT -> server (iperf3 TCP DUR s)
#   conn     outside -> 198.18.48.1:PORT, short connections (conn_rate, DUR s, 1 thread,
#            against addr_echo: one line, server closes)
#   lo       client in pxbH -> 127.0.0.1:PORT (Docker's default for loopback: docker-proxy)
# retr/dup: TCP retransmits in the iperf3 client's namespace, and how many of them
# the receivers reported as duplicates (D-SACK): spurious ones (reordering).
# CPU: busy CPU-seconds of the whole VM (/proc/stat) and of the Plexus daemon
# during each measurement.
# Needs root, dockerd + /usr/bin/docker (20.10), busybox-static, iperf3,
# python3, and target/release/examples/{addr_echo,conn_rate}:
#   cargo build --release --bin plexus --example addr_echo --example conn_rate
#
# Usage: bench/docker.sh [PLEXUS_BIN] [DUR]
#   PXB_HOLD=SECS keeps everything up that long after the tables (to inspect).

set -u -o pipefail
BIN=$(readlink -f "${1:-target/release/plexus}")
DUR=${2:-5}
EXAMPLES=$(dirname "$BIN")/examples
H=pxbH O=pxbO HIP=198.18.48.1 OIP=198.18.48.2
PLUGIN=pxb$$
PINGS=20
die() { echo "docker.sh: $*" >&2; exit 1; }
[ "$(id -u)" = 0 ] || die "run as root"
[ -x "$BIN" ] || die "no binary $BIN (cargo build --release --bin plexus)"
for x in addr_echo conn_rate; do
  [ -x "$EXAMPLES/$x" ] || die "no $EXAMPLES/$x (cargo build --release --example addr_echo --example conn_rate)"
done
DOCKERD=$(command -v dockerd) || die "no dockerd"
if [ -x /usr/bin/docker ]; then DOCKER_CLI=/usr/bin/docker; else DOCKER_CLI=$(command -v docker) || die "no docker client"; fi
BUSYBOX=/bin/busybox; [ -x $BUSYBOX ] || BUSYBOX=$(command -v busybox) || die "no busybox"
IPERF3=$(command -v iperf3) || die "no iperf3"
for ns in $H $O; do [ -e /run/netns/$ns ] && die "netns $ns exists (another run?)"; done
[ -e /run/docker/plugins/$PLUGIN.sock ] && die "/run/docker/plugins/$PLUGIN.sock exists"

T0=$(date +%s)
T=$(mktemp -d /tmp/pxb.XXXXXX)
PX_PID="" D_PID="" D_MNT="" MADE_RUN_CONTAINERD=""

# Waits up to $2 s for our child $1 to exit after SIGTERM, then SIGKILLs it.
stop_pid() {
  local pid=$1 secs=$2 i
  kill -TERM "$pid" 2>/dev/null || return 0
  for i in $(seq $((secs * 10))); do
    st=$(ps -o stat= -p "$pid" 2>/dev/null) || break
    case $st in Z*) break ;; esac
    sleep 0.1
  done
  kill -KILL "$pid" 2>/dev/null
  wait "$pid" 2>/dev/null
}

cleanup() {
  set +e
  trap - EXIT INT TERM
  if [ -n "$D_PID" ] && kill -0 "$D_PID" 2>/dev/null; then
    ids=$(dk ps -aq 2>/dev/null)
    [ -n "$ids" ] && timeout 60 "$DOCKER_CLI" rm -f $ids >/dev/null 2>&1
    timeout 30 "$DOCKER_CLI" network rm pxbpx pxbbr >/dev/null 2>&1
    stop_pid "$D_PID" 15
  fi
  # containerd and shims dockerd started live in its mount namespace: if it was
  # killed, end what is left there (only processes of that namespace, by pid).
  if [ -n "$D_MNT" ]; then
    for p in /proc/[0-9]*; do
      [ "$(readlink "$p/ns/mnt" 2>/dev/null)" = "$D_MNT" ] && kill -KILL "${p#/proc/}" 2>/dev/null
    done
  fi
  [ -n "$PX_PID" ] && stop_pid "$PX_PID" 10
  rm -f /run/docker/plugins/$PLUGIN.sock /run/docker/plugins/$PLUGIN.spec /run/docker/plugins/$PLUGIN.json
  ip netns del $O 2>/dev/null; ip netns del $H 2>/dev/null
  [ -n "$MADE_RUN_CONTAINERD" ] && rmdir /run/containerd 2>/dev/null
  rm -rf "$T"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

export DOCKER_HOST=unix://$T/docker.sock DOCKER_API_VERSION=1.41 DOCKER_CONFIG=$T/client
unset DOCKER_CONTEXT DOCKER_TLS_VERIFY DOCKER_CERT_PATH
dk() { timeout 120 "$DOCKER_CLI" "$@" </dev/null; }
px() { PLEXUS_SOCKET=$T/plexus.sock "$BIN" "$@"; }
inH() { ip netns exec $H "$@"; }
inO() { ip netns exec $O "$@"; }

# --- namespaces ------------------------------------------------------------
ip netns add $H; ip netns add $O
ip -n $H link add pxbho type veth peer name pxboh netns $O
ip -n $H addr add $HIP/24 dev pxbho; ip -n $O addr add $OIP/24 dev pxboh
for ns in $H $O; do ip -n $ns link set lo up; done
ip -n $H link set pxbho up; ip -n $O link set pxboh up
inO sysctl -qw net.ipv4.ip_local_port_range="1024 65000"

# --- Plexus daemon (pxbH, CPU 1, our namespace's mounts) --------------------
mkdir -p "$T/plexus" "$T/client"
nsenter --net=/run/netns/$H taskset -c 1 env PLEXUS_IFNAME_PREFIX=pxb PLEXUS_NETNS_PREFIX=pxb- \
  "$BIN" daemon --state-dir "$T/plexus" --socket "$T/plexus.sock" --docker-plugin $PLUGIN \
  </dev/null >"$T/plexus.log" 2>&1 &
PX_PID=$!
for _ in $(seq 100); do px info >/dev/null 2>&1 && [ -S /run/docker/plugins/$PLUGIN.sock ] && break; sleep 0.1; done
px info >/dev/null 2>&1 || { cat "$T/plexus.log"; die "the Plexus daemon did not start"; }

# --- dockerd (pxbH, CPU 1) -------------------------------------------------
# `ip netns exec` mounts a fresh /sys: put the host's cgroup hierarchies back
# under it (dockerd wants the devices cgroup), and give containerd's fixed
# /run/containerd a private tmpfs (no host containerd, no other engine's shims).
CG=""
while read -r _ point type opts _; do
  case $point in /sys/fs/cgroup | /sys/fs/cgroup/*) ;; *) continue ;; esac
  case $type in tmpfs | cgroup | cgroup2) ;; *) continue ;; esac
  CG="$CG mkdir -p $point && mount -t $type -o $opts $type $point &&"
done </proc/self/mounts
[ -d /run/containerd ] || { mkdir -p -m 711 /run/containerd; MADE_RUN_CONTAINERD=1; }
echo "{\"deprecated-key-path\": \"$T/key.json\"}" >"$T/daemon.json"
env -u NOTIFY_SOCKET -u LISTEN_FDS -u LISTEN_PID ip netns exec $H taskset -c 1 sh -c "$CG
  mount -t tmpfs -o mode=711 tmpfs /run/containerd && exec $DOCKERD --config-file $T/daemon.json \
  --data-root $T/root --exec-root $T/exec --pidfile $T/dockerd.pid -H unix://$T/docker.sock \
  --log-level=warn --iptables=true --userland-proxy=true" </dev/null >"$T/dockerd.log" 2>&1 &
D_PID=$!
for _ in $(seq 600); do
  dk info >/dev/null 2>&1 && break
  kill -0 $D_PID 2>/dev/null || { cat "$T/dockerd.log"; die "dockerd exited"; }
  sleep 0.1
done
D_MNT=$(readlink /proc/$D_PID/ns/mnt)
dk info >/dev/null 2>&1 || { cat "$T/dockerd.log"; die "dockerd did not answer"; }

# --- image: busybox + iperf3 + addr_echo (with their libraries) ------------
R=$T/img/rootfs
mkdir -p "$R"/{bin,etc,tmp,proc,sys,dev,root,usr/bin}
chmod 1777 "$R/tmp"
put() { # put SRC DEST: the binary and the libraries ldd lists, at their paths
  mkdir -p "$R$(dirname "$2")"; cp -L "$1" "$R$2"
  for lib in $(ldd "$1" 2>/dev/null | grep -o '/[^ ]*'); do
    [ -e "$R$lib" ] || { mkdir -p "$R$(dirname "$lib")"; cp -L "$lib" "$R$lib"; }
  done
}
put "$BUSYBOX" /bin/busybox
for a in $($BUSYBOX --list); do [ -e "$R/bin/$a" ] || ln -s busybox "$R/bin/$a"; done
put "$IPERF3" /usr/bin/iperf3
put "$EXAMPLES/addr_echo" /usr/bin/addr_echo
printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n' >"$R/etc/passwd"
printf 'root:x:0:\nnogroup:x:65534:\n' >"$R/etc/group"
tar --numeric-owner -C "$R" -cf "$T/img/rootfs.tar" .
dk import --change 'CMD ["/bin/sh"]' "$T/img/rootfs.tar" pxbimg >/dev/null || die "docker import"
rm -rf "$T/img"

# --- networks and containers -----------------------------------------------
dk network create -d $PLUGIN --ipam-driver $PLUGIN --subnet 10.91.0.0/24 pxbpx >/dev/null || die "Plexus network"
dk network create --subnet 10.92.0.0/24 pxbbr >/dev/null || die "bridge network"
SRV='iperf3 -s -p 5201 >/dev/null 2>&1 & exec addr_echo 7001'
dk run -d --name pxsrv --network pxbpx --cpuset-cpus 0 -p 5201:5201 -p 7001:7001 pxbimg sh -c "$SRV" >/dev/null || die "pxsrv"
dk run -d --name pxcli --network pxbpx --cpuset-cpus 0 pxbimg sleep 1000000 >/dev/null || die "pxcli"
dk run -d --name brsrv --network pxbbr --cpuset-cpus 0 -p 5202:5201 -p 7002:7001 -p 5203:5201 -p 7003:7001 \
  pxbimg sh -c "$SRV" >/dev/null || die "brsrv"
dk run -d --name brcli --network pxbbr --cpuset-cpus 0 pxbimg sleep 1000000 >/dev/null || die "brcli"
# 5203 and 7003 skip Docker's DNAT and land on docker-proxy's listeners.
inH iptables -t nat -I PREROUTING 1 -p tcp -m multiport --dports 5203,7003 -j RETURN
ipof() { dk inspect -f '{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}' "$1"; }
PXSRV=$(ipof pxsrv) BRSRV=$(ipof brsrv)
pidof_c() { dk inspect -f '{{.State.Pid}}' "$1"; }
PXCLI=pid:$(pidof_c pxcli) BRCLI=pid:$(pidof_c brcli)
sleep 1

# --- measuring ---------------------------------------------------------------
HZ=$(getconf CLK_TCK)
busy() { awk '/^cpu /{print $2+$3+$4+$7+$8+$9}' /proc/stat; }
pxcpu() { sed 's/.*) //' /proc/$PX_PID/stat | awk '{print $12+$13}'; }
CPU_TABLE=()
# tcpctr pid:N|ns:NAME: "RETRANS DUP" of that network namespace's TCP: segments
# retransmitted, and segments the peers reported as duplicates (D-SACK), i.e.
# retransmits that were spurious (nothing for "-").
tcpctr() {
  case $1 in
    pid:*) cat "/proc/${1#pid:}/net/snmp" "/proc/${1#pid:}/net/netstat" ;;
    ns:*) ip netns exec "${1#ns:}" cat /proc/net/snmp /proc/net/netstat ;;
    *) return ;;
  esac 2>/dev/null | awk '/^(Tcp|TcpExt):/ { if (!(h[$1]++)) { split($0, k); next } split($0, v)
    for (i in k) { if (k[i] == "RetransSegs") r = v[i]; if (k[i] == "TCPDSACKRecvSegs") d = v[i] } }
    END { print r + 0, d + 0 }'
}
# measure ROW COL SENDER CMD...: runs CMD, keeps its stdout in $OUT, the CPU it
# cost in CPU_TABLE and SENDER's namespace's TCP retransmits and duplicates in
# $RETR and $DUP.
measure() {
  local row=$1 col=$2 snd=$3 b0 p0 r0 d0; shift 3
  b0=$(busy); p0=$(pxcpu); read -r r0 d0 <<<"$(tcpctr "$snd")"
  OUT=$("$@" 2>"$T/err")
  local rc=$?
  local vm px_s
  read -r RETR DUP <<<"$(tcpctr "$snd")"; RETR=$((RETR - ${r0:-0})) DUP=$((DUP - ${d0:-0}))
  vm=$(awk -v a="$b0" -v b="$(busy)" -v hz="$HZ" 'BEGIN{printf "%.1f", (b-a)/hz}')
  px_s=$(awk -v a="$p0" -v b="$(pxcpu)" -v hz="$HZ" 'BEGIN{printf "%.1f", (b-a)/hz}')
  CPU_TABLE+=("$row|$col|$vm|$px_s")
  [ -s "$T/err" ] && { echo "[$row / $col] stderr:"; sed 's/^/  /' "$T/err"; } >&2
  return $rc
}
gbits() { python3 -c '
import json,sys
retr,dup=int(sys.argv[1]),int(sys.argv[2])
try:
    j=json.load(sys.stdin)
except Exception as e:
    print("FAIL(no json)"); sys.exit()
if "error" in j: print("FAIL(%s)" % j["error"]); sys.exit()
e=j["end"]
print("%.2f%s" % (e["sum_received"]["bits_per_second"]/1e9, " (%d retr, %d dup)" % (retr, dup) if retr or dup else ""))' "$RETR" "$DUP"; }
rtt() { sed -n 's|.*min/avg/max = [^/]*/\([^/]*\)/.*|\1|p' | grep . || echo FAIL; }
rate() { awk '{r=$1; sub("/s","",r); e=""; for(i=2;i<=NF;i++){split($i,kv,"="); if((kv[1]=="errors"||kv[1]=="timeouts")&&kv[2]>0) e=e" "$i} print r e}' | grep . || echo FAIL; }

echo "source address addr_echo sees (outside client $OIP; host client 127.0.0.1):"
for p in "Plexus O 7001" "DNAT O 7002" "docker-proxy O 7003" "Plexus H 7001" "docker-proxy H 7002"; do
  set -- $p
  if [ "$2" = O ]; then to=$HIP; else to=127.0.0.1; fi
  printf '  %-13s %-22s %s\n' "$1" "-> $to:$3" "$(ip netns exec pxb$2 timeout 5 $BUSYBOX nc -w 3 $to "$3" </dev/null | tr -d '\n')"
done

declare -A V
measure c2c_tcp px "$PXCLI" dk exec pxcli iperf3 -c "$PXSRV" -p 5201 -t "$DUR" -J; V[c2c_tcp,px]=$(gbits <<<"$OUT")
measure c2c_tcp br "$BRCLI" dk exec brcli iperf3 -c "$BRSRV" -p 5201 -t "$DUR" -J; V[c2c_tcp,br]=$(gbits <<<"$OUT")
measure c2c_rtt px - dk exec pxcli ping -q -c $PINGS -i 0.2 "$PXSRV"; V[c2c_rtt,px]=$(rtt <<<"$OUT")
measure c2c_rtt br - dk exec brcli ping -q -c $PINGS -i 0.2 "$BRSRV"; V[c2c_rtt,br]=$(rtt <<<"$OUT")
for c in "px 5201 7001" "br 5202 7002" "pr 5203 7003"; do
  set -- $c
  measure pub_tcp "$1" ns:$O inO taskset -c 0 iperf3 -c $HIP -p "$2" -t "$DUR" -J; V[pub_tcp,$1]=$(gbits <<<"$OUT")
  measure pub_conn "$1" - inO taskset -c 0 "$EXAMPLES/conn_rate" $HIP:"$3" "$DUR"; V[pub_conn,$1]=$(rate <<<"$OUT")
done
for c in "px 5201 7001" "pr 5202 7002"; do
  set -- $c
  measure lo_tcp "$1" ns:$H inH taskset -c 0 iperf3 -c 127.0.0.1 -p "$2" -t "$DUR" -J; V[lo_tcp,$1]=$(gbits <<<"$OUT")
  measure lo_conn "$1" - inH taskset -c 0 "$EXAMPLES/conn_rate" 127.0.0.1:"$3" "$DUR"; V[lo_conn,$1]=$(rate <<<"$OUT")
done
PX_TOTAL=$(awk -v t="$(pxcpu)" -v hz="$HZ" 'BEGIN{printf "%.1f", t/hz}')

ROWS=(c2c_tcp c2c_rtt pub_tcp pub_conn lo_tcp lo_conn)
declare -A LABEL=(
  [c2c_tcp]="container -> container TCP Gbit/s"
  [c2c_rtt]="container -> container ping RTT avg ms ($PINGS x 0.2 s)"
  [pub_tcp]="outside -> $HIP:port TCP Gbit/s (published)"
  [pub_conn]="outside -> $HIP:port short connections/s (1 client thread)"
  [lo_tcp]="host -> 127.0.0.1:port TCP Gbit/s"
  [lo_conn]="host -> 127.0.0.1:port short connections/s (1 client thread)"
)
echo
echo "dockerd $("$DOCKERD" --version | awk '{print $3}' | tr -d ,), DUR=${DUR}s, $(nproc) CPUs; Docker bridge = kernel bridge + iptables DNAT;"
echo "docker-proxy = the userland proxy (outside rows: DNAT skipped for its ports; host rows: loopback is never DNATed)"
echo "retr/dup: TCP segments retransmitted in the iperf3 client's namespace / of them reported back as duplicates (D-SACK):"
echo "spurious retransmits after reordering (here a veth receive on the other CPU reorders; Plexus paths always cross CPUs);"
echo "host -> 127.0.0.1 via docker-proxy also counts docker-proxy -> container, which sends from the same namespace"
echo
echo "| path | Plexus | Docker bridge | docker-proxy |"
echo "|---|---|---|---|"
for r in "${ROWS[@]}"; do
  echo "| ${LABEL[$r]} | ${V[$r,px]:--} | ${V[$r,br]:--} | ${V[$r,pr]:--} |"
done
echo
echo "CPU-seconds busy during each measurement: whole VM (/proc/stat, of $(nproc)x the duration) / Plexus daemon"
echo
echo "| path | Plexus | Docker bridge | docker-proxy |"
echo "|---|---|---|---|"
declare -A C
for e in "${CPU_TABLE[@]}"; do
  IFS='|' read -r row col vm pxs <<<"$e"
  C[$row,$col]="$vm / $pxs"
done
for r in "${ROWS[@]}"; do
  echo "| ${LABEL[$r]} | ${C[$r,px]:--} | ${C[$r,br]:--} | ${C[$r,pr]:--} |"
done
echo
echo "Plexus daemon CPU time, whole run: ${PX_TOTAL} s; run took $(($(date +%s) - T0)) s (before cleanup)"
echo
echo "Plexus switch counters after the run (plexus stats):"
px stats 2>&1 | sed 's/^/  /'
n=$(grep -cE ': (warning|error): ' "$T/plexus.log")
echo "Plexus daemon log: $n warnings/errors"
grep -E ': (warning|error): ' "$T/plexus.log" | head -5 | sed 's/^/  /'
if [ -n "${PXB_HOLD:-}" ]; then
  echo "holding ${PXB_HOLD}s before cleanup: DOCKER_HOST=$DOCKER_HOST DOCKER_API_VERSION=1.41 PLEXUS_SOCKET=$T/plexus.sock"
  sleep "$PXB_HOLD"
fi
