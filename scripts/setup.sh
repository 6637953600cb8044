#!/usr/bin/env bash
# Installs what building, the demo and the tests need, and nothing that is already there.
# Debian packages (as root, or through sudo) and a Python venv in .venv for the test tools.
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
for pkg in mosquitto mosquitto-clients libmosquitto-dev libsqlite3-dev sqlite3 openssl python3-venv libbluetooth-dev tshark systemd; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || need+=("$pkg")
done
if [ ${#need[@]} -gt 0 ]; then
  echo "setup: installing ${need[*]}"
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
# The Debian package enables a system-wide broker on :1883 where systemd runs; the demo and
# the tests start their own brokers and never rely on it.

command -v swift >/dev/null || { echo "setup: swift is not on PATH (Swift 6.1 or newer is needed)"; exit 1; }

# Bumble (the virtual Bluetooth controllers of the BLE tests) needs Python 3.11 or newer.
python=""
for candidate in python3 python3.13 python3.12 python3.11; do
  if command -v "$candidate" >/dev/null \
     && "$candidate" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)' 2>/dev/null; then
    python="$candidate"; break
  fi
done
[ -n "$python" ] || { echo "setup: Python 3.11 or newer is needed for .venv (bumble)"; exit 1; }
if [ -x .venv/bin/python ] && ! .venv/bin/python -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)'; then
  echo "setup: .venv has a Python older than 3.11; recreating it"
  rm -rf .venv
fi
if [ ! -x .venv/bin/python ]; then
  echo "setup: creating .venv"
  "$python" -m venv .venv
fi
if ! .venv/bin/python -c "import jsonschema, fhir.resources, bumble" 2>/dev/null \
   || [ "$(.venv/bin/python -c 'import importlib.metadata as m; print(m.version("bumble"))' 2>/dev/null)" != "0.0.236" ]; then
  .venv/bin/pip install -q --disable-pip-version-check -r scripts/requirements-test.txt
fi
