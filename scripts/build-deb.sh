#!/usr/bin/env bash
# Builds the Debian package iomt-agent_<version>_<arch>.deb with dpkg-deb, from the tree that
# scripts/install.sh stages (PREFIX=/usr) into a temporary DESTDIR. Install it on a hub with
#   apt install ./iomt-agent_<version>_<arch>.deb
#
#   scripts/build-deb.sh [--binary PATH] [--out DIR] [--version V] [--allow-dynamic-swift]
#
#   (default)              builds the release binary first:
#                          swift build -c release --static-swift-stdlib --product iomt-agent
#                          (the Swift runtime is linked in, so the hub needs no Swift toolchain)
#   --binary PATH          package this binary instead (e.g. a cross-compiled aarch64 build)
#   --out DIR              where the .deb goes [.build/deb]
#   --version V            package version [VERSION file, else `git describe --tags` of a v* tag,
#                          else the binary's --version plus +git<commit>]
#   --no-strip             keep the symbol table (by default the packaged copy is stripped with
#                          strip --strip-unneeded, or llvm-strip for another architecture:
#                          about half the size; crash backtraces then show addresses only)
#   --compression C        xz (smallest) or gzip (fastest; the tests use it) [xz]
#   --allow-dynamic-swift  package a binary that loads the Swift runtime from the toolchain
#                          (a debug build: the tests do this to save build time). Such a package
#                          only runs where that toolchain is installed; its description says so.
#
# The architecture comes from the binary's ELF header (x86-64 -> amd64, AArch64 -> arm64, ARM ->
# armhf). Depends: the Debian packages owning the shared libraries the binary loads (ldd, and
# dpkg -S), or for a binary of another architecture its DT_NEEDED entries mapped by a table;
# libmosquitto1 and libsqlite3-0 always. Prints the path of the .deb on its last line.
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
umask 022

binary=""
out="$repo/.build/deb"
version=""
allow_dynamic_swift=0
strip_binary=1
compression=xz
while [ $# -gt 0 ]; do
  case "$1" in
    --binary) binary="$2"; shift 2 ;;
    --binary=*) binary="${1#*=}"; shift ;;
    --out) out="$2"; shift 2 ;;
    --out=*) out="${1#*=}"; shift ;;
    --version) version="$2"; shift 2 ;;
    --version=*) version="${1#*=}"; shift ;;
    --allow-dynamic-swift) allow_dynamic_swift=1; shift ;;
    --no-strip) strip_binary=0; shift ;;
    --compression) compression="$2"; shift 2 ;;
    --compression=*) compression="${1#*=}"; shift ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "build-deb.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
done
die() { echo "build-deb.sh: $*" >&2; exit 1; }
case "$compression" in xz|gzip) ;; *) die "--compression must be xz or gzip" ;; esac
command -v dpkg-deb >/dev/null || die "dpkg-deb is missing (Debian package dpkg)"

if [ -z "$binary" ]; then
  echo "build-deb.sh: building the release binary (static Swift runtime)"
  (cd "$repo" && swift build -c release --static-swift-stdlib --product iomt-agent)
  binary="$(cd "$repo" && swift build -c release --show-bin-path)/iomt-agent"
fi
[ -f "$binary" ] && [ -x "$binary" ] || die "not an executable: $binary"
binary="$(cd "$(dirname "$binary")" && pwd)/$(basename "$binary")"

# Architecture from the ELF header: e_machine, 2 bytes little-endian at offset 18.
[ "$(head -c 4 "$binary" | od -An -c | tr -d ' ')" = '177ELF' ] || die "$binary is not an ELF file"
machine="$(od -An -t u2 -j 18 -N 2 "$binary" | tr -d ' ')"
case "$machine" in
  62) arch=amd64 ;;
  183) arch=arm64 ;;
  40) arch=armhf ;;
  *) die "unknown ELF machine $machine in $binary" ;;
esac

# Version.
if [ -z "$version" ] && [ -f "$repo/VERSION" ]; then version="$(tr -d ' \n' < "$repo/VERSION")"; fi
if [ -z "$version" ] && tag="$(git -C "$repo" describe --tags --match 'v[0-9]*' 2>/dev/null)"; then
  version="${tag#v}"; version="${version//-/+}"
fi
if [ -z "$version" ]; then
  base="$("$binary" --version 2>/dev/null | tr -d ' \n' || true)"
  [ -n "$base" ] || base="0.0.0"
  commit="$(git -C "$repo" rev-parse --short HEAD 2>/dev/null || true)"
  version="$base${commit:++git$commit}"
fi
[[ "$version" =~ ^[0-9][A-Za-z0-9.+~-]*$ ]] || die "not a Debian version: $version"

# Shared libraries -> Debian packages.
declare -A deps=([libmosquitto1]=1 [libsqlite3-0]=1)
dynamic_swift=()
host_arch="$(dpkg --print-architecture)"
if [ "$arch" = "$host_arch" ] && ldd_out="$(ldd "$binary" 2>/dev/null)"; then
  while read -r soname path; do
    case "$soname" in
      libswift*|libFoundation*|lib_Foundation*|libdispatch.so*|libBlocksRuntime.so*|libicu*swift*)
        dynamic_swift+=("$soname"); continue ;;
    esac
    [ -n "$path" ] || continue
    owner="$(dpkg -S "$path" 2>/dev/null || dpkg -S "$(readlink -f "$path")" 2>/dev/null || true)"
    [ -n "$owner" ] || die "no Debian package owns $path (needed by $binary)"
    pkg="${owner%%:*}"
    deps[$pkg]=1
  done < <(printf '%s\n' "$ldd_out" | awk '$2 == "=>" && $3 ~ /^\// { print $1, $3 } $2 == "=>" && $3 == "not" { print $1 }')
else
  command -v readelf >/dev/null || die "readelf (binutils) is needed to read a $arch binary's libraries"
  while read -r soname; do
    case "$soname" in
      libc.so.6|libm.so.6|libpthread.so.0|libdl.so.2|librt.so.1|libutil.so.1|ld-linux*) deps[libc6]=1 ;;
      libstdc++.so.6) deps[libstdc++6]=1 ;;
      libgcc_s.so.1) deps[libgcc-s1]=1 ;;
      libmosquitto.so.1) deps[libmosquitto1]=1 ;;
      libsqlite3.so.0) deps[libsqlite3-0]=1 ;;
      libssl.so.3|libcrypto.so.3) deps[libssl3]=1 ;;
      libz.so.1) deps[zlib1g]=1 ;;
      libbluetooth.so.3) deps[libbluetooth3]=1 ;;
      libswift*|libFoundation*|lib_Foundation*|libdispatch.so*|libBlocksRuntime.so*) dynamic_swift+=("$soname") ;;
      *) die "no package known for $soname (needed by the $arch binary); add it to this table" ;;
    esac
  done < <(readelf -d "$binary" | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p')
fi
if [ ${#dynamic_swift[@]} -gt 0 ] && [ "$allow_dynamic_swift" != 1 ]; then
  die "$binary loads the Swift runtime (${dynamic_swift[*]}): build it with --static-swift-stdlib, or pass --allow-dynamic-swift for a test package"
fi
depends="$(printf '%s\n' "${!deps[@]}" | sort | paste -sd, - | sed 's/,/, /g')"
# The release link packs relative relocations (DT_RELR, Package.swift): glibc 2.36 or later
# (Debian 12, Raspberry Pi OS bookworm) loads that; older loaders refuse the binary by name.
if readelf -V "$binary" 2>/dev/null | grep -q GLIBC_ABI_DT_RELR; then
  depends="$(printf '%s' "$depends" | sed 's/\blibc6\b/libc6 (>= 2.36)/')"
fi

# Stage.
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
root="$work/root"
if [ "$strip_binary" = 1 ]; then
  cp "$binary" "$work/iomt-agent"
  if [ "$arch" = "$host_arch" ] && command -v strip >/dev/null; then
    strip --strip-unneeded "$work/iomt-agent"
  elif command -v llvm-strip >/dev/null; then
    llvm-strip --strip-unneeded "$work/iomt-agent"
  else
    echo "build-deb.sh: warning: no strip for $arch: packaging the binary unstripped" >&2
  fi
  binary="$work/iomt-agent"
fi
completions=()
[ "$arch" = "$host_arch" ] || completions=(--no-completions)
"$repo/scripts/install.sh" --binary "$binary" --prefix /usr --destdir "$root" "${completions[@]}" >/dev/null

install -d -m 0755 "$root/DEBIAN"
installed_size="$(du -sk --exclude=DEBIAN "$root" | cut -f1)"
description="edge gateway agent for medical sensors
 Turns readings from USB-serial and (later) Bluetooth LE medical devices into one normalized
 format, keeps each reading on disk until the hospital MQTT broker has acknowledged it, and
 publishes it with store-and-forward guarantees. Runs as the systemd service iomt-agent
 (user iomt); see /usr/share/doc/iomt-agent/DEPLOY.md."
if [ ${#dynamic_swift[@]} -gt 0 ]; then
  description="$description
 .
 TEST BUILD: this binary loads the Swift runtime dynamically from the toolchain it was built
 with; it is not for installation on a hub (build with --static-swift-stdlib)."
fi
cat > "$root/DEBIAN/control" <<EOF
Package: iomt-agent
Version: $version
Architecture: $arch
Maintainer: iomt-agent maintainers <iomt-agent@localhost>
Installed-Size: $installed_size
Depends: $depends
Recommends: systemd, udev
Section: net
Priority: optional
Description: $description
EOF

printf '/etc/iomt-agent/agent.yaml\n' > "$root/DEBIAN/conffiles"

# Maintainer scripts: deploy/debian/ (postinst: sysusers, tmpfiles, udev and systemd reloads,
# never starts the agent; prerm: stop and disable on removal; postrm: keeps the buffer).
for script in postinst prerm postrm; do
  install -m 0755 "$repo/deploy/debian/$script" "$root/DEBIAN/$script"
done
chmod 0644 "$root/DEBIAN/control" "$root/DEBIAN/conffiles"

mkdir -p "$out"
deb="$(cd "$out" && pwd)/iomt-agent_${version}_${arch}.deb"
dpkg-deb --root-owner-group -Z"$compression" --build "$root" "$deb" >/dev/null
echo "build-deb.sh: $deb (Depends: $depends)"
echo "$deb"
