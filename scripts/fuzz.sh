#!/bin/sh
# fuzz.sh runs every Fuzz* target in the repository for a short, bounded run
# (FUZZTIME, default 5000x executions each; any `go test -fuzztime` value such
# as 10s or 500x). The default counts executions rather than seconds: with a
# duration, Go 1.26's fuzz coordinator can report "context deadline exceeded"
# at the deadline without any failing input (golang/go#75804, fixed in 1.27);
# a count has no deadline. Minimizing each new interesting input is capped at
# 100 executions (FUZZMINIMIZE): by default it may take 60 s per input, with
# the execution count frozen meanwhile, which made one target stall a CI run
# for over a minute. It is a smoke pass on top of the seed corpora that `go test` already
# runs: it catches crashes near the seeds, not deep bugs. A failing input is
# written to the package's testdata/fuzz/ directory by `go test`, ready to
# commit as a regression seed.
#
#	scripts/fuzz.sh [PACKAGES...]   (default ./...)
set -eu
cd "$(dirname "$0")/.."
FUZZTIME="${FUZZTIME:-5000x}"
FUZZMINIMIZE="${FUZZMINIMIZE:-100x}"
[ $# -gt 0 ] || set -- ./...

list=$(mktemp)
trap 'rm -f "$list"' EXIT
# `go test -list` prints the matching names of each package, then a line
# "ok <pkg> <time>" (or "? <pkg> [no test files]"); pair them up.
if ! go test -list '^Fuzz' "$@" >"$list" 2>&1; then
	cat "$list" >&2
	echo "fuzz.sh: listing fuzz targets failed (does the repository build?)" >&2
	exit 1
fi
targets=$(awk '
	/^Fuzz[A-Za-z0-9_]*$/ { names[n++] = $1; next }
	$1 == "ok" { for (i = 0; i < n; i++) print $2, names[i]; n = 0 }
' "$list")

if [ -z "$targets" ]; then
	echo "fuzz.sh: no fuzz targets found"
	exit 0
fi

count=0
failed=""
# Targets run one at a time: the fuzzer already uses every core.
while read -r pkg name; do
	count=$((count + 1))
	echo "fuzz.sh: $pkg $name for $FUZZTIME"
	if ! go test -run '^$' -fuzz "^${name}\$" -fuzztime "$FUZZTIME" -fuzzminimizetime "$FUZZMINIMIZE" "$pkg"; then
		failed="$failed $pkg.$name"
	fi
done <<EOT
$targets
EOT

if [ -n "$failed" ]; then
	echo "fuzz.sh: FAILED:$failed (the failing inputs are under each package's testdata/fuzz/)" >&2
	exit 1
fi
echo "fuzz.sh: $count fuzz targets passed"
