#!/usr/bin/env bash
# Installs iomt-agent: the binary, the systemd unit, sysusers.d and tmpfiles.d entries, udev
# rules, the default configuration (never overwriting an existing one), shell completions and
# the documentation. deploy/README.md explains each file; scripts/build-deb.sh packages the
# same tree.
#
#   scripts/install.sh [--binary PATH] [--prefix DIR] [--destdir DIR] [--no-completions]
#
#   --binary PATH     the iomt-agent executable [.build/release/iomt-agent, made by
#                     swift build -c release --static-swift-stdlib --product iomt-agent]
#   --prefix DIR      installation prefix, also $PREFIX [/usr/local]
#   --destdir DIR     stage into DIR (packaging), also $DESTDIR [none]. With a DESTDIR nothing
#                     is activated: the commands to run on the target are printed instead.
#   --no-completions  do not generate shell completions (they are made by running the
#                     binary, which a cross-compiled binary cannot do on this machine)
#
# Layout (PREFIX=/usr/local; the .deb uses /usr):
#   $PREFIX/bin/iomt-agent                                 0755
#   $PREFIX/lib/systemd/system/iomt-agent.service          0644  ExecStart rewritten to $PREFIX/bin
#   $PREFIX/lib/sysusers.d/iomt-agent.conf                 0644
#   $PREFIX/lib/tmpfiles.d/iomt-agent.conf                 0644
#   udev rules: $PREFIX/lib/udev/rules.d when PREFIX=/usr, else /etc/udev/rules.d   0644
#   /etc/iomt-agent/agent.yaml                             0640  only if absent
#   $PREFIX/share/iomt-agent/profiles/*.yaml               0644  declarative line profiles
#   $PREFIX/share/doc/iomt-agent/                          0644  README.md, DEPLOY.md, UDEV.md,
#                                                                agent.yaml.example, rules examples
#   $PREFIX/share/bash-completion/completions/iomt-agent, zsh and fish completions   0644
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
umask 022  # directories 0755 whatever the caller's umask; files get explicit modes

binary=""
prefix="${PREFIX:-/usr/local}"
destdir="${DESTDIR:-}"
completions=1
while [ $# -gt 0 ]; do
  case "$1" in
    --binary) binary="$2"; shift 2 ;;
    --binary=*) binary="${1#*=}"; shift ;;
    --prefix) prefix="$2"; shift 2 ;;
    --prefix=*) prefix="${1#*=}"; shift ;;
    --destdir) destdir="$2"; shift 2 ;;
    --destdir=*) destdir="${1#*=}"; shift ;;
    --no-completions) completions=0; shift ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "install.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
done

case "$prefix" in /*) ;; *) echo "install.sh: --prefix must be absolute: $prefix" >&2; exit 2 ;; esac
prefix="${prefix%/}"
[ -n "$prefix" ] || prefix=/
if [ -n "$destdir" ]; then
  mkdir -p "$destdir"
  destdir="$(cd "$destdir" && pwd)"
fi

if [ -z "$binary" ]; then
  binary="$repo/.build/release/iomt-agent"
  if [ ! -x "$binary" ]; then
    echo "install.sh: $binary is missing; build it first:" >&2
    echo "  swift build -c release --static-swift-stdlib --product iomt-agent" >&2
    echo "or name a binary with --binary PATH" >&2
    exit 1
  fi
fi
[ -f "$binary" ] && [ -x "$binary" ] || { echo "install.sh: not an executable: $binary" >&2; exit 1; }

bindir="$prefix/bin"
libdir="$prefix/lib"
unitdir="$libdir/systemd/system"
sysusersdir="$libdir/sysusers.d"
tmpfilesdir="$libdir/tmpfiles.d"
if [ "$prefix" = "/usr" ]; then udevdir="/usr/lib/udev/rules.d"; else udevdir="/etc/udev/rules.d"; fi
confdir="/etc/iomt-agent"
datadir="$prefix/share/iomt-agent"
docdir="$prefix/share/doc/iomt-agent"
bashdir="$prefix/share/bash-completion/completions"
if [ "$prefix" = "/usr" ]; then zshdir="$prefix/share/zsh/vendor-completions"; else zshdir="$prefix/share/zsh/site-functions"; fi
fishdir="$prefix/share/fish/vendor_completions.d"

D="$destdir"
put() { # put MODE SOURCE TARGET (TARGET without DESTDIR)
  install -D -m "$1" "$2" "$D$3"
  echo "  $3"
}

echo "install.sh: installing into ${D:-/} (prefix $prefix)"
put 0755 "$binary" "$bindir/iomt-agent"

unit_tmp="$(mktemp)"
trap 'rm -f "$unit_tmp"' EXIT
sed -e "s#/usr/local/bin/iomt-agent#$bindir/iomt-agent#g" \
    -e "s#file:///usr/share/doc/iomt-agent/#file://$docdir/#g" \
    "$repo/deploy/iomt-agent.service" > "$unit_tmp"
put 0644 "$unit_tmp" "$unitdir/iomt-agent.service"
put 0644 "$repo/deploy/sysusers.d/iomt-agent.conf" "$sysusersdir/iomt-agent.conf"
put 0644 "$repo/deploy/tmpfiles.d/iomt-agent.conf" "$tmpfilesdir/iomt-agent.conf"
for rules in "$repo"/udev/*.rules; do
  put 0644 "$rules" "$udevdir/$(basename "$rules")"
done

install -d -m 0750 "$D$confdir"
if [ -e "$D$confdir/agent.yaml" ]; then
  echo "  $confdir/agent.yaml exists: kept (the new default is $docdir/agent.yaml.example)"
else
  put 0640 "$repo/deploy/agent.yaml" "$confdir/agent.yaml"
fi

for profile in "$repo"/deploy/profiles/*.yaml; do
  put 0644 "$profile" "$datadir/profiles/$(basename "$profile")"
done
put 0644 "$repo/README.md" "$docdir/README.md"
put 0644 "$repo/deploy/README.md" "$docdir/DEPLOY.md"
put 0644 "$repo/udev/README.md" "$docdir/UDEV.md"
put 0644 "$repo/deploy/agent.yaml" "$docdir/agent.yaml.example"
for example in "$repo"/udev/*.example; do
  put 0644 "$example" "$docdir/$(basename "$example")"
done

if [ "$completions" = 1 ]; then
  comp_tmp="$(mktemp -d)"
  trap 'rm -f "$unit_tmp"; rm -rf "$comp_tmp"' EXIT
  if "$binary" --generate-completion-script bash > "$comp_tmp/bash" 2>/dev/null &&
     "$binary" --generate-completion-script zsh > "$comp_tmp/zsh" 2>/dev/null &&
     "$binary" --generate-completion-script fish > "$comp_tmp/fish" 2>/dev/null &&
     [ -s "$comp_tmp/bash" ] && [ -s "$comp_tmp/zsh" ] && [ -s "$comp_tmp/fish" ]; then
    put 0644 "$comp_tmp/bash" "$bashdir/iomt-agent"
    put 0644 "$comp_tmp/zsh" "$zshdir/_iomt-agent"
    put 0644 "$comp_tmp/fish" "$fishdir/iomt-agent.fish"
  else
    echo "install.sh: warning: $binary cannot run here (another architecture?): no shell completions" >&2
  fi
fi

activate=(
  "systemd-sysusers $sysusersdir/iomt-agent.conf"
  "systemd-tmpfiles --create $tmpfilesdir/iomt-agent.conf"
  "udevadm control --reload"
  "udevadm trigger --action=change --subsystem-match=tty --subsystem-match=usb"
  "systemctl daemon-reload"
)
next="review $confdir/agent.yaml (gateway.id, broker.url, credentials), check it with
    iomt-agent config check --config $confdir/agent.yaml
  then start the agent with
    systemctl enable --now iomt-agent"

if [ -n "$D" ]; then
  echo "install.sh: staged under $D; nothing activated. On the target, as root, run:"
  for c in "${activate[@]}"; do echo "    $c"; done
  echo "  then $next"
  exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
  echo "install.sh: not root: nothing activated. As root, run:"
  for c in "${activate[@]}"; do echo "    $c"; done
  echo "  then $next"
  exit 0
fi

echo "install.sh: activating"
systemd-sysusers "$sysusersdir/iomt-agent.conf"
systemd-tmpfiles --create "$tmpfilesdir/iomt-agent.conf"
if command -v udevadm >/dev/null && [ -d /run/udev ]; then
  udevadm control --reload || true
  udevadm trigger --action=change --subsystem-match=tty --subsystem-match=usb || true
else
  echo "  udev is not running here: rules installed, not triggered"
fi
if [ -d /run/systemd/system ]; then
  systemctl daemon-reload
else
  echo "  systemd is not running here: unit installed, not loaded"
fi
echo "install.sh: done. The agent is not started: $next"
