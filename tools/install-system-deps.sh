#!/usr/bin/env bash
# Installs the Debian packages soko drives (tgt, QEMU, libvirt, dnsmasq, iptables, XFS...)
# and prepares what libvirtd needs on a bare machine. Idempotent: it runs `apt-get update`
# only when a package is missing and never undoes what a machine already has.
set -euo pipefail

PACKAGES=(
  tgt libiscsi-bin qemu-utils qemu-block-extra qemu-system-x86
  libvirt-daemon libvirt-daemon-driver-qemu libvirt-clients libvirt-dev pkg-config gcc
  dnsmasq-base iptables iproute2 xfsprogs e2fsprogs util-linux lvm2
  # tenant-network tests: a real DHCP client, ping and curl inside instance namespaces,
  # ssh to the test guest, iperf3 for `soko bench net`; the test guest's ssh server
  udhcpc iputils-ping curl openssh-client iperf3 dropbear-bin
  python3-venv
  # headers to build the C extensions PyPI has no wheel of here (gunicorn_h1c, libvirt-python)
  python3-dev
  # shared libraries that the test guest's qemu-ga is linked against (image/guest_builder.py
  # copies them from the host into the image, as ldd resolves them)
  libglib2.0-0 libudev1 libnuma1 liburing2 libpcre2-8-0
)

if [ "$(id -u)" != 0 ]; then
  echo "install-system-deps: run as root (apt-get and libvirt setup need it)" >&2
  exit 1
fi

missing=()
for pkg in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "install-system-deps: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# libvirtd's qemu driver refuses to start without these users and groups.
getent group kvm >/dev/null || groupadd -r kvm
getent passwd libvirt-qemu >/dev/null || useradd -r -g kvm -s /usr/sbin/nologin libvirt-qemu
getent group libvirt-qemu >/dev/null || groupadd -r libvirt-qemu
mkdir -p /var/log/libvirt /var/run/libvirt /var/lib/libvirt

# QEMU runs as root with no security driver: there is no AppArmor/SELinux label to apply
# on this kind of host, and iSCSI disks need no file ownership changes.
conf=/etc/libvirt/qemu.conf
# Minimal images may drop the package's conffile; an empty one means "all defaults".
[ -f "$conf" ] || { mkdir -p /etc/libvirt; : >"$conf"; }
if [ -f "$conf" ] && ! grep -q '^# soko settings' "$conf"; then
  cat >>"$conf" <<'CONF'
# soko settings
user = "root"
group = "root"
security_driver = "none"
CONF
fi
# A private mount namespace per VM holds a copy of every host mount (loop-mounted pools and
# devices of other tests) until the VM exits, so their teardown finds them busy.
if ! grep -q '^namespaces' "$conf"; then
  printf 'namespaces = []\n' >>"$conf"
  # A running libvirtd reads qemu.conf only at start: stop it, soko starts it on demand.
  pkill -x libvirtd 2>/dev/null || true
fi
