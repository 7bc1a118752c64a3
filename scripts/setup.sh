#!/usr/bin/env bash
# Installs what ironfleet needs on a fresh Debian machine: system packages (the real OpenStack
# clients the tests drive) and the npm dependencies. Idempotent; safe to run every time.
set -euo pipefail
cd "$(dirname "$0")/.."

# qemu-system-x86 + kmod (depmod): the deploy ramdisk is built from Debian packages (apt-get download)
# and booted in a TCG VM by the tests.
# chromium: the web console's browser tests (driven by playwright-core; no browser download).
APT_PACKAGES=(python3-ironicclient python3-sushy openssl zstd curl qemu-utils qemu-system-x86 kmod parted gdisk mdadm dosfstools systemd chromium)
missing=()
for p in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  SUDO=""
  [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  echo "setup: installing ${missing[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
# `ironfleet ramdisk build` downloads the kernel and busybox packages: the package lists must know them.
if ! apt-cache show linux-image-amd64 busybox-static >/dev/null 2>&1; then
  SUDO=""
  [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
fi

if [ ! -d node_modules ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  echo "setup: npm ci (builds better-sqlite3 from source, ~1 min)"
  npm ci --no-audit --no-fund
fi
