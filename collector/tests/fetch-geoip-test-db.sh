#!/usr/bin/env bash
# Fetches MaxMind's GeoLite2 *test* database (fake data, a few dozen networks, 18 KB) for the
# GeoIP unit test in collector/src/enrich.rs. The product never downloads anything; only tests
# use this file.
#
# Source: the PyPI sdist of `maxminddb` (MaxMind's own Python reader), which vendors MaxMind's
# test data at tests/data/test-data/GeoLite2-Country-Test.mmdb (the JSON it was built from is
# tests/data/source-data/GeoLite2-Country-Test.json in the same sdist). The version and the
# file's SHA-256 are pinned, so a changed upstream file fails loudly instead of silently changing
# what the test asserts.
#
# Usage (prints the database path on stdout, everything else goes to stderr):
#   export WAYMARK_TEST_GEOIP="$(bash collector/tests/fetch-geoip-test-db.sh)"
#   cargo test -p waymark-collector --lib enrich
#
# Idempotent: when the file is already there with the right hash it does nothing (no network).
set -euo pipefail

PKG_VERSION="3.2.0"
MEMBER="maxminddb-${PKG_VERSION}/tests/data/test-data/GeoLite2-Country-Test.mmdb"
SHA256="6996ce679243c7f719b901ebe3b490048af2fb5965163f083857533841154fd8"

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
dest_dir="${CARGO_TARGET_DIR:-$root/target}/test-data"
dest="$dest_dir/GeoLite2-Country-Test.mmdb"

hash_ok() { [ -f "$1" ] && [ "$(sha256sum "$1" | cut -d' ' -f1)" = "$SHA256" ]; }

if hash_ok "$dest"; then
  echo "$dest"
  exit 0
fi

mkdir -p "$dest_dir"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

echo "fetching maxminddb==$PKG_VERSION sdist from PyPI for its GeoIP test database" >&2
# --no-binary only for maxminddb itself: the sdist holds the test data, the wheel does not.
# (Not `:all:`, which would also build pip's build backend from source and take minutes.)
python3 -m pip download --quiet --no-deps --no-binary maxminddb \
  "maxminddb==$PKG_VERSION" -d "$tmp" >&2

tar -xzf "$tmp/maxminddb-$PKG_VERSION.tar.gz" -C "$tmp" "$MEMBER"
if ! hash_ok "$tmp/$MEMBER"; then
  echo "error: $MEMBER does not have the pinned SHA-256 $SHA256" >&2
  exit 1
fi
mv -f "$tmp/$MEMBER" "$dest"
echo "$dest"
