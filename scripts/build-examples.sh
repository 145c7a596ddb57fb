#!/bin/sh
# build-examples.sh builds every examples/*/ app by running the build commands
# of its verge.toml (see scripts/buildex). Extra arguments are passed on, e.g.
# app directories to build only those.
set -eu
cd "$(dirname "$0")/.."
exec go run ./scripts/buildex "$@"
