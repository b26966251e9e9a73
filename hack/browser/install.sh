#!/usr/bin/env bash
# Headless Chromium and its chromedriver for the status page's browser tests, from Debian's
# packages when missing (as root). Without root or apt, the browser tests skip and say why.
set -euo pipefail
if command -v chromium >/dev/null && command -v chromedriver >/dev/null; then exit 0; fi
if [[ $(id -u) -ne 0 ]] || ! command -v apt-get >/dev/null; then
  echo "no chromium/chromedriver and no way to install them here: the browser tests will skip" >&2
  exit 0
fi
echo "installing chromium and chromium-driver from Debian's packages" >&2
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium chromium-driver >/dev/null
