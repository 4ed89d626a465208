#!/bin/sh
# Builds the corpus's base image (busybox-static, one layer) and pushes it to REGISTRY.
# Usage: make-base.sh REGISTRY_ADDR REF_PATH [buildah global flags...]
#   e.g. make-base.sh 127.0.0.1:5000 kiln-corpus/base:1 --root /tmp/st --runroot /tmp/run --storage-driver vfs
# The image is 127.0.0.1:5000/kiln-corpus/base:1. It already holds the paths a RUN sandbox mounts over
# (/dev, /proc, /sys, /run, empty /etc/hosts, /etc/hostname, /etc/resolv.conf) so that no builder
# has to leave placeholders for them in a layer: the peers' layers then differ only by what the
# Dockerfile does.
set -eu
registry=$1; ref=$2; shift 2
bb=/usr/bin/busybox
[ -x "$bb" ] || { echo "make-base.sh: $bb missing (apt-get install busybox-static)" >&2; exit 1; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
root=$work/rootfs
mkdir -p "$root/bin" "$root/etc" "$root/dev" "$root/proc" "$root/sys" "$root/run" "$root/home" \
         "$root/root" "$root/tmp" "$root/var/tmp"
cp "$bb" "$root/bin/busybox"
chmod 0755 "$root/bin/busybox"
for p in $("$bb" --list-full); do
    [ "$p" = bin/busybox ] && continue
    mkdir -p "$root/$(dirname "$p")"
    ln -s /bin/busybox "$root/$p"
done
printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n' > "$root/etc/passwd"
printf 'root:x:0:\nstaff:x:50:\nnogroup:x:65534:\n' > "$root/etc/group"
: > "$root/etc/hosts"; : > "$root/etc/hostname"; : > "$root/etc/resolv.conf"
chmod 0644 "$root/etc/passwd" "$root/etc/group" "$root/etc/hosts" "$root/etc/hostname" "$root/etc/resolv.conf"
find "$root" -type d -exec chmod 0755 {} +
chmod 1777 "$root/tmp" "$root/var/tmp"; chmod 0700 "$root/root"
ctr=$(buildah "$@" from scratch)
buildah "$@" copy "$ctr" "$root" / >/dev/null
buildah "$@" config --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin --cmd sh "$ctr"
buildah "$@" commit -q --rm "$ctr" "kiln-corpus-base" >/dev/null
buildah "$@" push -q --tls-verify=false "kiln-corpus-base" "docker://$registry/$ref"
