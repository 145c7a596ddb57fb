#!/bin/sh
# setup.sh installs what the tests, examples and benchmarks need on a Debian
# machine that already has Go, gcc and git. It is idempotent: when every
# package is present it changes nothing and needs neither root nor network.
set -eu

# wabt: wat2wasm for test fixtures. binaryen: wasm-opt.
# clang lld wasi-libc libclang-rt-dev-wasm32: the C example (wasm32-wasi).
# rustc libstd-rust-dev-wasm32: the Rust example (/usr/bin/rustc, no cargo).
# wrk: the HTTP benchmark (bench/http). make: the Makefile (gcc does not pull it in).
# chromium nodejs (npm): the rooms' end-to-end tests run partysocket from Node
# and the chat page in headless Chromium (tests/node).
PACKAGES="make wabt binaryen clang lld wasi-libc libclang-rt-dev-wasm32 rustc libstd-rust-dev-wasm32 wrk chromium nodejs"

die() {
	echo "setup.sh: $*" >&2
	exit 1
}

command -v go >/dev/null 2>&1 || die "go is not in PATH: install Go $(sed -n 's/^go //p' "$(dirname "$0")/../go.mod" 2>/dev/null) first"
command -v dpkg-query >/dev/null 2>&1 || die "this script needs a Debian-based system (dpkg-query not found); install by hand: $PACKAGES"

missing=""
for p in $PACKAGES; do
	# dpkg -s also succeeds for removed-but-configured packages; the status
	# field says whether the package is really installed.
	if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
		missing="$missing $p"
	fi
done

# Debian packages npm apart from nodejs; NodeSource's nodejs ships it.
command -v npm >/dev/null 2>&1 || missing="$missing npm"

if [ -n "$missing" ]; then
	echo "setup.sh: installing:$missing"
	SUDO=""
	if [ "$(id -u)" -ne 0 ]; then
		command -v sudo >/dev/null 2>&1 || die "not root and sudo not found; run as root: apt-get install$missing"
		SUDO="sudo"
	fi
	export DEBIAN_FRONTEND=noninteractive
	$SUDO apt-get update -q || die "apt-get update failed"
	# shellcheck disable=SC2086 # word splitting of $missing is intended
	$SUDO apt-get install -y -q --no-install-recommends $missing || die "apt-get install failed for:$missing"
fi

# Check the toolchains themselves, so a package renamed or laid out
# differently in another Debian release fails here, with its name, rather than
# halfway through the test suite.
for tool in make wat2wasm wasm-opt clang wasm-ld /usr/bin/rustc wrk node npm /usr/bin/chromium; do
	command -v "$tool" >/dev/null 2>&1 || die "$tool is missing although its package is installed"
done
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
printf '#include <stdio.h>\nint main(void) { puts("ok"); return 0; }\n' >"$tmp/t.c"
clang --target=wasm32-wasi --sysroot=/usr -O2 -o "$tmp/t.wasm" "$tmp/t.c" ||
	die "clang cannot build for wasm32-wasi with --sysroot=/usr (packages: clang lld wasi-libc libclang-rt-dev-wasm32)"
printf 'fn main() { println!("ok"); }\n' >"$tmp/t.rs"
/usr/bin/rustc --target wasm32-wasi -O -o "$tmp/t.wasm" "$tmp/t.rs" ||
	die "/usr/bin/rustc cannot build for wasm32-wasi (packages: rustc libstd-rust-dev-wasm32)"
# The Node clients of the rooms' tests (partysocket, ws, playwright-core
# driving the system's Chromium), pinned by tests/node/package-lock.json.
nodedir="$(dirname "$0")/../tests/node"
if [ ! -d "$nodedir/node_modules/partysocket" ] || [ "$nodedir/package-lock.json" -nt "$nodedir/node_modules/.package-lock.json" ]; then
	echo "setup.sh: npm ci in tests/node"
	(cd "$nodedir" && npm ci --no-audit --no-fund --loglevel=error) || die "npm ci in tests/node failed"
fi
echo "setup.sh: ok"
