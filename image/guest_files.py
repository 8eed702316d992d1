"""What runs inside the test guest: its init scripts, disk hot-plug handler and record writer.

Kept apart from the image builder (``soko.image.guest_builder``) because the tests read the
same contract the guest speaks: the console markers below and the writer's record format.
The guest has busybox and no udev, so these scripts do by hand what udev and systemd would.
"""

from __future__ import annotations

import hashlib

READY_MARKER = "SOKO-GUEST-READY"
METADATA_MARKER = "SOKO-METADATA"
DISK_READY_MARKER = "SOKO-DISK-READY"
WRITER_RECORDS = "soko-records"
WRITER_ACKED = "/run/soko-writer.acked"

INITRAMFS_INIT = r"""#!/bin/busybox sh
# Loads the virtio block drivers, finds root=LABEL=... and switches to it.
/bin/busybox --install -s /bin
export PATH=/bin
mount -t proc proc /proc; mount -t sysfs sysfs /sys; mount -t devtmpfs devtmpfs /dev
exec </dev/console >/dev/console 2>&1
KV=$(uname -r)
while read -r m; do insmod "/lib/modules/$KV/$m" 2>/dev/null; done < "/lib/modules/$KV/soko-modules.load"
root=LABEL=soko-root
for a in $(cat /proc/cmdline); do case $a in root=*) root=${a#root=} ;; esac; done
dev=""; i=0
while [ $i -lt 200 ]; do
  case $root in /dev/*) [ -b "$root" ] && dev=$root ;; *) dev=$(findfs "$root" 2>/dev/null) ;; esac
  [ -n "$dev" ] && [ -b "$dev" ] && break
  dev=""; i=$((i+1)); sleep 0.05
done
if [ -z "$dev" ] || ! mount -t ext4 -o rw "$dev" /newroot; then
  echo "SOKO-INITRAMFS-FAIL root=$root block devices: $(ls /sys/block)"
  exec sh
fi
mount --move /dev /newroot/dev
umount /proc /sys
exec switch_root /newroot /sbin/init
"""

RCS = r"""#!/bin/sh
# Boot: mounts, modules, guest agent, data disks, DHCP, then the ready marker on ttyS0.
export PATH=/sbin:/bin:/usr/sbin:/usr/bin
up() { cut -d' ' -f1 /proc/uptime; }
mount -t proc proc /proc; mount -t sysfs sysfs /sys
grep -q ' /dev ' /proc/mounts || mount -t devtmpfs devtmpfs /dev
mkdir -p /dev/pts; mount -t devpts devpts /dev/pts
mount -t tmpfs -o mode=755 tmpfs /run; mount -t tmpfs tmpfs /tmp
mount -o remount,rw /
hostname -F /etc/hostname
KV=$(uname -r)
while read -r m; do insmod "/lib/modules/$KV/$m" 2>/dev/null; done < "/lib/modules/$KV/soko-modules.load"
ip link set lo up

# qemu-ga needs /dev/virtio-ports/<name>, which udev would create: link them from sysfs.
GA=/dev/virtio-ports/org.qemu.guest_agent.0
i=0
while [ ! -e $GA ] && [ $i -lt 30 ]; do
  for p in /sys/class/virtio-ports/vport*; do
    [ -r "$p/name" ] && n=$(cat "$p/name") && [ -n "$n" ] || continue
    mkdir -p /dev/virtio-ports; ln -sf "../${p##*/}" "/dev/virtio-ports/$n"
  done
  i=$((i+1)); [ -e $GA ] || sleep 0.1
done
GASTATE=none
[ -e $GA ] && qemu-ga -m virtio-serial -p $GA -l /run/qemu-ga.log -f /run/qemu-ga.pid -t /run -d && GASTATE=running

# Extra disks: those present now, and (through the uevent listener) those hot-plugged later.
awk '$2=="/"{print $1}' /proc/mounts | sed 's#/dev/##; s/p\?[0-9]*$//' > /run/soko-rootdisk
uevent /sbin/soko-uevent </dev/null >/dev/null 2>&1 &
for b in /sys/block/vd* /sys/block/sd*; do
  [ -e "$b" ] && [ "${b##*/}" != "$(cat /run/soko-rootdisk)" ] && /sbin/soko-disk "${b##*/}" add
done
DATA=$(awk '$2 ~ "^/mnt/" {printf "%s%s:%s", sep, $1, $2; sep=","}' /proc/mounts)

# Network: DHCP on the first NIC, if the domain has one (virtio_net probed it at insmod).
IF=$(ls /sys/class/net | grep -v '^lo$' | head -1)
IP=none; MAC=none
if [ -n "$IF" ]; then
  MAC=$(cat /sys/class/net/$IF/address)
  ip link set "$IF" up
  udhcpc -i "$IF" -s /etc/udhcpc/default.script -O staticroutes -t 15 -T 1 -A 3 -n -S >/dev/null 2>&1 && IP=$(cat /run/dhcp-ip)
fi
[ "$IP" != none ] && /sbin/soko-metadata

# ssh: dropbear, host keys made on first use (ed25519 for an OpenSSH client: quick on TCG).
mkdir -p /etc/dropbear
SSH=none
dropbear -R -p 22 -P /run/dropbear.pid 2>/dev/null && SSH=running
echo "soko-guest host=$(hostname) mac=$MAC ip=$IP" > /www/index.html
httpd -p 80 -h /www
echo "SOKO-GUEST-READY ip=$IP mac=$MAC if=${IF:-none} uptime=$(up) ga=$GASTATE data=${DATA:-none} ssh=$SSH" > /dev/console
"""

SOKO_METADATA = r"""#!/bin/sh
# What cloud-init does with the metadata at 169.254.169.254 (EC2 paths): the hostname,
# root's authorized ssh key, and a user-data script starting with #!, run once per
# instance. One line on the console says what was found: SOKO-METADATA id=... or none.
# GET /latest/$1 into $2. By hand with nc: busybox-static's wget crashes in glibc's NSS.
get() {
  printf 'GET /latest/%s HTTP/1.0\r\nHost: 169.254.169.254\r\n\r\n' "$1" |
    nc -w 3 169.254.169.254 80 > /run/metadata.http 2>/dev/null || return 1
  head -n 1 /run/metadata.http | grep -q ' 200 ' || return 1
  awk 'body { print; next } { sub(/\r$/, "") } $0 == "" { body = 1 }' /run/metadata.http > "$2"
}
i=0
until get meta-data/instance-id /run/instance-id; do
  i=$((i+1)); [ $i -ge 5 ] && { echo "SOKO-METADATA none" > /dev/console; exit 1; }
  sleep 0.5
done
ID=$(cat /run/instance-id)
get meta-data/hostname /run/hostname && hostname "$(cat /run/hostname)" && cp /run/hostname /etc/hostname
mkdir -p /root/.ssh && chmod 700 /root/.ssh
KEYS=0
if get meta-data/public-keys/0/openssh-key /run/openssh-key; then
  cp /run/openssh-key /root/.ssh/authorized_keys && chmod 600 /root/.ssh/authorized_keys
  KEYS=$(grep -c . /root/.ssh/authorized_keys)
fi
UD=none
if get user-data /run/user-data && [ "$(head -c 2 /run/user-data)" = "#!" ]; then
  done=/var/lib/soko/user-data.$ID.done
  if [ -e "$done" ]; then UD=ran-before; else
    mkdir -p /var/lib/soko && cp /run/user-data /var/lib/soko/user-data && chmod 700 /var/lib/soko/user-data
    /var/lib/soko/user-data > /var/lib/soko/user-data.log 2>&1; UD=ran:$?
    : > "$done"
  fi
fi
echo "SOKO-METADATA id=$ID hostname=$(hostname) keys=$KEYS userdata=$UD" > /dev/console
"""

SOKO_DISK = r"""#!/bin/sh
# soko-disk DEV add|remove: mounts a data disk on /mnt/DEV (mkfs.ext4 first only if its first
# MiB is blank, so a disk with data is never reformatted), or lazily unmounts a removed one.
d=$1; m=/mnt/$d
say() { echo "$*" > /dev/console; }
case $2 in
  remove) umount -l "$m" 2>/dev/null; say "SOKO-DISK-REMOVED dev=/dev/$d"; exit 0 ;;
  add) ;;
  *) exit 0 ;;
esac
grep -q " $m " /proc/mounts && exit 0
mkdir -p "$m"
if ! mount "/dev/$d" "$m" 2>/dev/null; then
  if [ "$(dd if=/dev/$d bs=64k count=16 2>/dev/null | tr -d '\000' | wc -c)" != 0 ]; then
    say "SOKO-DISK-FAILED dev=/dev/$d reason=not-blank-and-not-mountable"; exit 1
  fi
  mkfs.ext4 -q -F -L "data-$d" "/dev/$d" && mount "/dev/$d" "$m" || { say "SOKO-DISK-FAILED dev=/dev/$d reason=mkfs"; exit 1; }
fi
say "SOKO-DISK-READY dev=/dev/$d mnt=$m"
"""

SOKO_UEVENT = r"""#!/bin/sh
# Run by busybox `uevent` for every kernel uevent: whole virtio/SCSI disks go to soko-disk.
[ "$SUBSYSTEM" = block ] && [ "$DEVTYPE" = disk ] || exit 0
case $DEVNAME in vd*|sd*) ;; *) exit 0 ;; esac
[ "$DEVNAME" = "$(cat /run/soko-rootdisk)" ] && exit 0
exec /sbin/soko-disk "$DEVNAME" "$ACTION"
"""

SOKO_WRITER = r"""#!/bin/sh
# soko-writer DIR [INTERVAL [ACKED]]: appends numbered, checksummed records to DIR/soko-records,
# each fsync'd before its number is published in ACKED (default /run/soko-writer.acked; the
# pid goes next to it). A snapshot taken at any moment must then hold every record
# acknowledged before it. Runs until killed; on a host too (tests/block/test_freeze_safe.py).
dir=${1:?usage: soko-writer DIR [INTERVAL [ACKED]]}; f=$dir/soko-records
acked=${3:-/run/soko-writer.acked}
: > "$f" && sync "$f" "$dir" || exit 1
echo $$ > "${acked%.acked}.pid"
n=0
while :; do
  n=$((n + 1)); body="$n $(cut -d' ' -f1 /proc/uptime)"
  echo "$body $(printf '%s' "$body" | sha256sum | cut -c1-16)" >> "$f" && sync "$f" || exit 1
  echo $n > "$acked"
  sleep "${2:-0.1}"
done
"""

UDHCPC_SCRIPT = r"""#!/bin/sh
# busybox udhcpc hook: configures $interface from $ip $mask $router $staticroutes $dns.
case "$1" in
  deconfig) ip -4 addr flush dev "$interface"; ip link set "$interface" up ;;
  bound|renew)
    if [ "$(cat /run/dhcp-ip 2>/dev/null)" != "$ip" ]; then
      ip -4 addr flush dev "$interface"; ip addr add "$ip/${mask:-24}" dev "$interface"
    fi
    if [ -n "$router" ]; then
      ip route del default 2>/dev/null
      for r in $router; do ip route add default via "$r" dev "$interface"; break; done
    fi
    set -- $staticroutes  # option 121: "dest/len gateway" pairs (the metadata route)
    while [ $# -ge 2 ]; do ip route replace "$1" via "$2" dev "$interface"; shift 2; done
    : > /etc/resolv.conf
    for d in $dns; do echo "nameserver $d" >> /etc/resolv.conf; done
    echo "$ip" > /run/dhcp-ip ;;
esac
exit 0
"""

# qemu-ga's guest-shutdown execs `/sbin/shutdown -h -P +0` (or -r): busybox has no shutdown.
SHUTDOWN = r"""#!/bin/sh
sync
case " $* " in *" -r "*) exec /sbin/reboot ;; *) exec /sbin/poweroff ;; esac
"""

# The getty is an unauthenticated root shell on the serial console: this guest is for tests.
INITTAB = """::sysinit:/etc/init.d/rcS
ttyS0::respawn:/sbin/getty -n -l /bin/sh -L 115200 ttyS0 vt100
::ctrlaltdel:/sbin/poweroff
::shutdown:/bin/sh -c 'killall qemu-ga; sync; umount -a -r'
"""

ROOTFS: dict[str, tuple[str, int]] = {
    "etc/passwd": ("root:x:0:0:root:/root:/bin/sh\n", 0o644),
    "etc/group": ("root:x:0:\n", 0o644),
    "etc/hostname": ("soko-guest\n", 0o644),
    "etc/resolv.conf": ("", 0o644),
    "etc/shells": ("/bin/sh\n", 0o644),
    "etc/inittab": (INITTAB, 0o644),
    "etc/init.d/rcS": (RCS, 0o755),
    "etc/udhcpc/default.script": (UDHCPC_SCRIPT, 0o755),
    "sbin/shutdown": (SHUTDOWN, 0o755),
    "sbin/soko-disk": (SOKO_DISK, 0o755),
    "sbin/soko-metadata": (SOKO_METADATA, 0o755),
    "sbin/soko-uevent": (SOKO_UEVENT, 0o755),
    "usr/bin/soko-writer": (SOKO_WRITER, 0o755),
}


def extlinux_conf(root_label: str) -> str:
    return (
        "DEFAULT soko\nPROMPT 0\nTIMEOUT 0\nLABEL soko\n  LINUX /boot/vmlinuz\n"
        "  INITRD /boot/initrd.img\n"
        f"  APPEND root=LABEL={root_label} console=ttyS0,115200 quiet loglevel=3 panic=10\n"
    )


def verify_writer_records(text: str) -> int:
    """Checks ``soko-writer`` output; returns how many records 1..N are intact and in order.

    A torn last line is allowed: the writer may have been cut off before that record's fsync,
    and such a record was never acknowledged. A bad record anywhere else is corruption.
    """
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    for n, line in enumerate(lines, 1):
        parts = line.split(" ")
        intact = (len(parts) == 3 and parts[0] == str(n)
                  and hashlib.sha256(f"{parts[0]} {parts[1]}".encode()).hexdigest()[:16] == parts[2])
        if not intact:
            if n == len(lines):
                return n - 1
            raise ValueError(f"writer record {n} is corrupt: {line!r}")
    return len(lines)
