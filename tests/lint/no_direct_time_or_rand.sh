#!/usr/bin/env bash
# STYLE 6.6: only daemon/common may read the clocks or random sources directly; everything else in
# the daemon and storage receives a Clock& / Random& so tests can fake them.
set -u
root=${1:?usage: no_direct_time_or_rand.sh PROJECT_ROOT}
hits=$(grep -rnE 'std::chrono::(system|steady|high_resolution)_clock::now|[^_a-zA-Z]s?rand\(|random_device|RAND_bytes' \
  --include='*.cc' --include='*.h' "$root/daemon" "$root/storage" | grep -v "^$root/daemon/common/")
if [ -n "$hits" ]; then
  echo "direct clock or randomness outside daemon/common:"
  echo "$hits"
  echo "0 passed, 1 failed"
  exit 1
fi
echo "1 passed, 0 failed"
