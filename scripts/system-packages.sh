#!/usr/bin/env bash
# Install the Debian/Ubuntu packages the app (or, with "test", the test suite) needs when missing:
# with apt-get when running as root, otherwise print the exact apt-get line and stop.
set -euo pipefail
RUN_PACKAGES=(libpango-1.0-0 libpangoft2-1.0-0 libharfbuzz-subset0 fonts-noto-cjk)
TEST_PACKAGES=(poppler-utils libnss3-tools chromium graphviz slapd ldap-utils)
wanted=("${RUN_PACKAGES[@]}")
if [ "${1:-run}" = "test" ]; then wanted+=("${TEST_PACKAGES[@]}"); fi
missing=()
for package in "${wanted[@]}"; do
  dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" || missing+=("$package")
done
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" -eq 0 ]; then
  echo "installing system packages: ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
else
  echo "missing system packages; run as root:" >&2
  echo "  sudo apt-get install -y ${missing[*]}" >&2
  exit 1
fi
