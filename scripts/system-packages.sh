#!/usr/bin/env bash
# The Debian packages the test suite needs: Mosquitto (the tests' broker), openssl (their TLS
# certificates) and Chromium (browser tests, driven through Playwright). As root, install the
# missing ones; otherwise stop at once with the line to run, rather than fail test by test.
set -euo pipefail

missing=()
# Debian installs the broker in /usr/sbin, outside a user's PATH.
command -v mosquitto >/dev/null || [ -x /usr/sbin/mosquitto ] || missing+=(mosquitto)
command -v openssl >/dev/null || missing+=(openssl)
# tests/served.py finds CHROMIUM_PATH, chromium or chromium-browser, in that order.
if [ -z "${CHROMIUM_PATH:-}" ] || ! command -v "$CHROMIUM_PATH" >/dev/null; then
  command -v chromium >/dev/null || command -v chromium-browser >/dev/null || missing+=(chromium)
fi

[ ${#missing[@]} -eq 0 ] && exit 0

line="apt-get install -y --no-install-recommends ${missing[*]}"
if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null; then
  echo "The tests need these Debian packages: ${missing[*]}. Install them with:" >&2
  echo "  sudo $line" >&2
  exit 1
fi
echo "Installing the Debian packages the tests need: ${missing[*]}"
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
# Mosquitto's package starts a system broker on 1883; the tests start their own on free ports.
