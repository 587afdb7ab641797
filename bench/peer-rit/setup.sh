#!/bin/bash
# Prepares a checkout of the Go ground software (RIT-Launch-Initiative/GSW, Apache-2.0) for
# `deno task bench --peer-rit DIR`: adds the percentile reader and the benchmark config, writes
# the service configs, builds the three programs, and saves the service's shared-memory config.
#   usage: bench/peer-rit/setup.sh DIR     (DIR: the Go software's source, e.g. from
#          `git clone https://github.com/RIT-Launch-Initiative/GSW DIR`; needs Go 1.24+)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
dir=${1:?usage: setup.sh DIR (a checkout of RIT-Launch-Initiative/GSW)}
cd "$dir"
[ -f cmd/gsw_service.go ] || { echo "setup.sh: $dir is not a checkout of the Go ground software (no cmd/gsw_service.go)"; exit 1; }
mkdir -p cmd/p99reader bin
cp "$here/p99reader.go" cmd/p99reader/main.go
cp "$here/bench.yaml" data/config/bench.yaml
printf 'telemetry_config: data/config/bench.yaml\nlogging_config: data/config/logger.yaml\n' > data/config/gsw_service.yaml
sed -e 's/level: debug/level: info/' -e 's#    - data/logs/##' data/config/logger.yaml.example > data/config/logger.yaml
go build -o bin/gsw_service ./cmd/gsw_service.go
go build -o bin/ipc_benchmark ./cmd/ipc_benchmark
go build -o bin/p99reader ./cmd/p99reader
bin/gsw_service -c gsw_service >/dev/null 2>&1 & pid=$!
for _ in $(seq 50); do [ -f /dev/shm/gsw-service-telemetry-config ] && break; sleep 0.1; done
sleep 1
cp /dev/shm/gsw-service-telemetry-config shm-config
kill "$pid"; wait "$pid" 2>/dev/null || true
rm -f /dev/shm/gsw-service-telemetry-config
echo "ready: deno task bench --only peer-rit --peer-rit $dir"
