#!/usr/bin/env bash
# Fuzzes every parser for a while: scripts/fuzz.sh [SECONDS per target, default 120].
# Needs the nightly toolchain; installs cargo-fuzz if it is missing. Corpora are kept in
# $FLOWMERGE_FUZZ_DIR (default ~/.cache/flowmerge/fuzz), seeded from ../shared/realdata.
set -euo pipefail
cd "$(dirname "$0")/.."
secs="${1:-120}"
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked
work="${FLOWMERGE_FUZZ_DIR:-$HOME/.cache/flowmerge/fuzz}"
real="${FLOWMERGE_REALDATA:-../shared/realdata}"
export CARGO_TARGET_DIR="$work/target"
for target in vpcflow_parse cloudtrail_read dns_capture source_sniff; do
  corpus="$work/corpus/$target"
  mkdir -p "$corpus"
  case "$target" in
    vpcflow_parse) seeds="$real/vpcflow" ;;
    cloudtrail_read) seeds="$real/cloudtrail" ;;
    dns_capture) seeds="$real/dns_pcap" ;;
    *) seeds="$real" ;;
  esac
  [ -d "$seeds" ] && find "$seeds" -type f -size -256k -exec cp -n {} "$corpus/" \;
  # 64 KiB inputs: a gzip bomb of that size stays within the rss limit (deflate's ratio is ~1000).
  cargo +nightly fuzz run --fuzz-dir fuzz "$target" "$corpus" -- \
    -max_total_time="$secs" -max_len=65536 -rss_limit_mb=4096
done
