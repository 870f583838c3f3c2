#!/usr/bin/env bash
# Fuzzes every parser of outside bytes for a bounded time: builds the targets in fuzz_targets/
# with cargo-fuzz (libFuzzer; on the stable toolchain through RUSTC_BOOTSTRAP=1, no sanitizer:
# the parsers are safe Rust, and a panic is what libFuzzer catches), then runs each for
# FUZZ_SECONDS (default 30) on the committed seeds (seeds/<target>/, written by make-seeds.py)
# plus a working corpus in corpus/<target>/ (not committed). Prints the executions per target.
# A crash fails the run; its input is in artifacts/<target>/: turn it into a unit test.
# Arguments: target names to run only those.
set -euo pipefail
cd "$(dirname "$0")"
seconds=${FUZZ_SECONDS:-30}
export RUSTC_BOOTSTRAP=1
if ! command -v cargo-fuzz >/dev/null; then
  echo "fuzz/run.sh: installing cargo-fuzz from crates.io" >&2
  cargo install cargo-fuzz --locked --version 0.13.2
fi
cargo fetch --locked
cargo fuzz build -s none

# The longest input per target: a datagram, a frame, a QMP exchange past the 64 KiB line cap.
declare -A max_len=([dhcp_respond]=1600 [stale_frame]=1600 [arp_frame]=64 [ndp]=1600 [qmp_reply]=70000
  [config]=4096 [dispatcher_args]=512)
targets=("$@")
((${#targets[@]})) || targets=(dhcp_respond stale_frame arp_frame ndp qmp_reply config dispatcher_args)
mkdir -p target/logs
# Runs one target; its libFuzzer log is target/logs/TARGET.log.
fuzz_one() {
  local target=$1
  mkdir -p "corpus/$target"
  cargo fuzz run -s none "$target" "corpus/$target" "seeds/$target" -- \
    -max_total_time="$seconds" -max_len="${max_len[$target]}" -timeout=10 -rss_limit_mb=2048 \
    -print_final_stats=1 >"target/logs/$target.log" 2>&1
}
for target in "${targets[@]}"; do
  [ -n "${max_len[$target]:-}" ] || { echo "fuzz/run.sh: no target $target" >&2; exit 2; }
done
# As many targets at once as there are cores.
jobs=${FUZZ_JOBS:-$(nproc)}
failed=()
for ((i = 0; i < ${#targets[@]}; i += jobs)); do
  pids=()
  for target in "${targets[@]:i:jobs}"; do
    fuzz_one "$target" &
    pids+=("$!:$target")
  done
  for entry in "${pids[@]}"; do
    wait "${entry%%:*}" || failed+=("${entry#*:}")
  done
done
for target in "${failed[@]}"; do
  tail -n 40 "target/logs/$target.log" >&2
  echo "fuzz/run.sh: $target FAILED; the input is in fuzz/artifacts/$target/ (log: fuzz/target/logs/$target.log)" >&2
done
((${#failed[@]} == 0)) || exit 1
echo "fuzz/run.sh: ${seconds} s per target, $jobs at a time, no crash:"
for target in "${targets[@]}"; do
  log=target/logs/$target.log
  printf '  %-16s %12s executions %9s/s  %5s inputs in corpus\n' "$target" \
    "$(sed -n 's/^stat::number_of_executed_units: *//p' "$log")" \
    "$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log")" "$(find "corpus/$target" -type f | wc -l)"
done
