#!/usr/bin/env bash
# Builds offline stand-ins for the images critest pulls (test/images/critest-images.txt) as one
# OCI image layout, tag per image, into a cache outside the checkout, and prints its path:
#
#   bash test/images/build.sh        ->  /var/cache/berth-images/critest/oci
#
# The layout is rebuilt only when this directory, the pause source, Debian's busybox package
# or the tools change (a stamp of all of them). Tools: umoci, gcc (static libc), apt-get
# (to fetch Debian's busybox package once), dpkg-deb. Needs root (a setuid-root file).
#
# Why Debian's dynamic busybox and not busybox-static: the static build runs applets inside
# the shell process, so a container whose /bin/ls is masked still runs `ls` (critest's
# MaskedPaths spec expects "Permission denied"). Applets are hard links, not symlinks, so that
# a bind mount over /bin/ls does not mask /bin/busybox with it. Debian's busybox has no pgrep
# or ipcs applet, which critest execs: small shell stand-ins take their place.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
cache=${BERTH_IMAGE_CACHE:-/var/cache/berth-images}
out="$cache/critest"
mkdir -p "$cache/debs"
exec 9>"$cache/critest.lock"
flock 9

log() { echo "test/images: $*" >&2; }

busybox_deb() {
  local deb
  deb=$(ls "$cache"/debs/busybox_*.deb 2>/dev/null | tail -1 || true)
  if [[ -z $deb ]]; then
    # Debian's package (a package registry, reached through apt); fetched once per cache.
    (cd "$cache/debs" && { apt-get download busybox >/dev/null 2>&1 || { apt-get update -qq && apt-get download busybox >/dev/null; }; })
    deb=$(ls "$cache"/debs/busybox_*.deb | tail -1)
  fi
  echo "$deb"
}

deb=$(busybox_deb)
stamp=$( (cd "$here" && find . -type f | LC_ALL=C sort | xargs sha256sum; sha256sum "$repo/native/pause/pause.c";
  basename "$deb"; umoci --version; gcc --version | head -1) | sha256sum | cut -c1-16)
if [[ -f $out/stamp && $(cat "$out/stamp") == "$stamp" && -f $out/oci/index.json ]]; then
  echo "$out/oci"
  exit 0
fi
started=$(date +%s)
log "building the critest image stand-ins into $out"
work=$(mktemp -d "$cache/build.XXXXXX")
trap 'rm -rf "$work"' EXIT
L="$work/oci"
bin="$work/bin"
mkdir -p "$bin" "$work/root"

gcc -std=gnu11 -Os -static -s -o "$bin/pause" "$repo/native/pause/pause.c"
gcc -std=gnu11 -Os -static -s -o "$bin/webserver" "$here/src/webserver.c"
gcc -std=gnu11 -Os -static -s -o "$bin/nnp" "$here/src/nnp.c"
dpkg-deb -x "$deb" "$work/busybox-deb"
BB="$work/busybox-deb/bin/busybox"

# --- the busybox root file system every image but pause starts from ----------------------
R="$work/root/busybox"
mkdir -p "$R"
(
  cd "$R"
  mkdir -p bin sbin usr/bin usr/sbin etc root home tmp var/run var/www proc sys dev
  chmod 1777 tmp
  chmod 700 root
  install -m 755 "$BB" bin/busybox
  # its shared libraries, at the same paths
  for l in $(ldd "$BB" | grep -o '/[^ ]*'); do
    mkdir -p ".$(dirname "$l")"
    cp -L "$l" ".$l"
  done
  for a in $("$BB" --list-full); do [[ -e $a ]] || ln bin/busybox "$a"; done
  cat >usr/bin/pgrep <<'S'
#!/bin/sh
# pgrep NAME: pids of the processes whose name contains NAME; exit 1 if none
[ -n "$1" ] || { echo "usage: pgrep NAME" >&2; exit 2; }
rc=1
for d in /proc/[0-9]*; do
  read -r n < "$d/comm" 2>/dev/null || continue
  case "$n" in *"$1"*) [ "${d#/proc/}" != "$$" ] && { echo "${d#/proc/}"; rc=0; } ;; esac
done
exit $rc
S
  cat >usr/bin/ipcs <<'S'
#!/bin/sh
# ipcs [-m]: the System V shared memory segments of this IPC namespace
echo
echo "------ Shared Memory Segments --------"
echo "key        shmid      owner      perms      bytes      nattch     status"
awk 'NR>1 { printf "0x%08x %-10s %-10s %-10s %-10s %-10s\n", $1, $2, $8, $3, $4, $7 }' /proc/sysvipc/shm
echo
S
  chmod 755 usr/bin/pgrep usr/bin/ipcs
  cat >etc/passwd <<'S'
root:x:0:0:root:/root:/bin/sh
daemon:x:1:1:daemon:/usr/sbin:/bin/false
bin:x:2:2:bin:/bin:/bin/false
sys:x:3:3:sys:/dev:/bin/false
sync:x:4:100:sync:/bin:/bin/sync
mail:x:8:8:mail:/var/spool/mail:/bin/false
www-data:x:33:33:www-data:/var/www:/bin/false
operator:x:37:37:Operator:/var:/bin/false
nobody:x:65534:65534:nobody:/home:/bin/false
S
  printf '%s\n' root:x:0: daemon:x:1: bin:x:2: sys:x:3: adm:x:4: tty:x:5: disk:x:6: lp:x:7: mail:x:8: \
    kmem:x:9: wheel:x:10:root cdrom:x:11: dialout:x:18: floppy:x:19: video:x:28: audio:x:29: tape:x:32: \
    www-data:x:33: operator:x:37: utmp:x:43: plugdev:x:46: staff:x:50: lock:x:54: netdev:x:82: users:x:100: \
    nogroup:x:65534: >etc/group
  printf 'root:*:10933:0:99999:7:::\nnobody:*:10933:0:99999:7:::\n' >etc/shadow
  chmod 600 etc/shadow
  : >etc/hosts
  : >etc/resolv.conf
  echo localhost >etc/hostname
)

umoci init --layout "$L"
PATHENV="PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
# derive NEW BASE [umoci config args]: a new tag from BASE with a changed config
derive() {
  local t=$1 b=$2
  shift 2
  umoci config --image "$L:$b" --tag "$t" --history.comment "berth critest stand-in $t" "$@"
}
# add TAG DIR: a layer holding DIR's contents at /
add() { umoci insert --image "$L:$1" "$2" /; }
# root NAME: an empty directory for an image's own files
root() {
  local d="$work/root/$1"
  mkdir -p "$d"
  echo "$d"
}

umoci new --image "$L:busybox"
add busybox "$R"
umoci config --image "$L:busybox" --config.env "$PATHENV" --config.cmd sh --config.workingdir / \
  --history.comment "busybox $("$BB" | head -1 | awk '{print $2}') from Debian's busybox package"

# pause: only /pause, user 65535 as upstream; the sandbox image differs by a label only
umoci new --image "$L:pause"
d=$(root pause)
cp "$bin/pause" "$d/pause"
add pause "$d"
umoci config --image "$L:pause" --config.entrypoint /pause --config.user 65535:65535 --config.workingdir / \
  --history.comment "pause (berth-pause)"
derive sandbox-pause pause --config.label "berth.test/role=sandbox"

# nginx: busybox + the web server as /usr/sbin/nginx, whose cmdline reads like nginx's master
d=$(root nginx)
mkdir -p "$d/usr/sbin" "$d/var/run" "$d/etc/nginx" "$d/var/log/nginx"
cp "$bin/webserver" "$d/usr/sbin/nginx"
derive nginx busybox --clear config.cmd --clear config.entrypoint
add nginx "$d"
umoci config --image "$L:nginx" --config.env "PORT=80" --config.env "PIDFILE=/var/run/nginx.pid" \
  --config.env "PROC_TITLE=nginx: master process nginx -g daemon off;" --config.exposedports 80/tcp \
  --config.cmd nginx --config.cmd -g --config.cmd "daemon off;" --history.comment "nginx stand-in"
derive hostnet-nginx nginx --config.env "PORT=12003" --config.exposedports 12003/tcp

# httpd: upstream logs "AH00094: Command line: 'httpd -D FOREGROUND'", which critest reads
d=$(root httpd)
mkdir -p "$d/usr/local/apache2/bin" "$d/usr/local/apache2/htdocs"
cp "$bin/webserver" "$d/usr/local/apache2/bin/httpd"
derive httpd busybox --clear config.cmd
add httpd "$d"
umoci config --image "$L:httpd" \
  --config.env "PATH=/usr/local/apache2/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin" \
  --config.env "PORT=80" --config.env "STARTUP_MSG=[core:notice] [pid 1] AH00094: Command line: 'httpd -D FOREGROUND'" \
  --config.exposedports 80/tcp --config.workingdir /usr/local/apache2 \
  --config.cmd httpd --config.cmd -D --config.cmd FOREGROUND --history.comment "httpd stand-in"

# nonewprivs: a setuid-root program printing its effective uid, run as user 1000
d=$(root nonewprivs)
mkdir -p "$d/usr/local/bin"
install -o 0 -g 0 -m 4755 "$bin/nnp" "$d/usr/local/bin/nnp"
derive nonewprivs busybox --clear config.cmd
add nonewprivs "$d"
umoci config --image "$L:nonewprivs" --config.user 1000 --config.entrypoint /usr/local/bin/nnp \
  --history.comment "nonewprivs stand-in"

# USER values as in cri-tools' images/
derive user-uid busybox --config.user 1002
derive user-username busybox --config.user www-data
derive user-uid-group busybox --config.user 1003:1004
derive user-username-group busybox --config.user www-data:1004

# default-user (1000) is a member of group-defined-in-image (50000)
d=$(root predefined-group)
mkdir -p "$d/etc" "$d/home/default-user"
cp "$R/etc/passwd" "$R/etc/group" "$d/etc/"
echo "default-user:x:1000:1000:Linux User,,,:/home/default-user:/bin/sh" >>"$d/etc/passwd"
printf 'default-user:x:1000:\ngroup-defined-in-image:x:50000:default-user\n' >>"$d/etc/group"
chown 1000:1000 "$d/home/default-user"
derive predefined-group busybox
add predefined-group "$d"
umoci config --image "$L:predefined-group" --config.user 1000 --history.comment "predefined group"

# image-test images: busybox + an empty file named after the image, so that each is distinct
for t in test-latest:test-image-latest test-tag-test:test test-tag-all:all test-1:test-image-1 \
  test-2:test-image-2 test-3:test-image-3 test-tags:test-image-tags; do
  tag=${t%%:*}
  d=$(root "$tag")
  : >"$d/${t#*:}"
  derive "$tag" busybox
  add "$tag" "$d"
done
umoci gc --layout "$L"

# every tag critest-images.txt names must exist
while read -r tag _; do
  [[ -z $tag || $tag == \#* ]] && continue
  umoci stat --image "$L:$tag" >/dev/null || { log "no image $tag built"; exit 1; }
done <"$here/critest-images.txt"

rm -rf "$out.old"
[[ -d $out ]] && mv "$out" "$out.old"
mkdir -p "$out"
mv "$L" "$out/oci"
echo "$stamp" >"$out/stamp"
rm -rf "$out.old"
log "built in $(($(date +%s) - started)) s"
echo "$out/oci"
