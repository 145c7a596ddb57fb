# The README's two commands are `make dev` and `make test`; everything else is
# a step of one of them. Targets are phony: go, clang and rustc keep their own
# caches, so rebuilding is cheap and never stale.

GO       ?= go
FUZZTIME ?= 5000x
APP      ?= examples/hello-go
LISTEN   ?= 127.0.0.1:8080

.PHONY: all setup examples build test unit tools fuzz dev bench clean

# `make -j test` must still set up before building and build before testing.
.NOTPARALLEL:

all: build

# Debian packages for the examples, tests and benchmarks (no-op when present).
setup:
	scripts/setup.sh

# Every examples/*/ app, through the build commands of its verge.toml.
examples:
	scripts/build-examples.sh

build:
	$(GO) build -o bin/verge ./cmd/verge

# The whole suite, as CI runs it on a fresh machine.
test: setup examples unit fuzz

# The Go tools in go.mod (Jaeger, for the tracing e2e test) are built before
# the tests, so that their first build on a fresh machine (minutes under
# load) does not count against a test package's timeout.
tools:
	$(GO) tool -n jaeger >/dev/null

unit: tools
	$(GO) test -count=1 -timeout 20m ./...

# A short bounded pass over every Fuzz* target (FUZZTIME each).
fuzz:
	FUZZTIME=$(FUZZTIME) scripts/fuzz.sh

# Serve an example app on LISTEN, rebuilding and reloading it on change.
dev: build
	bin/verge dev --listen $(LISTEN) $(APP)

# Every bench/*/ harness in turn; each prints JSON and a one-line summary.
# bench/http measures the warm verge executor (hello-go) and a WAGI hello
# (hello-c, the cheapest fresh instance); other harnesses run with their
# defaults. Run one by hand for other flags, e.g.
# `go run ./bench/http -app examples/hello-wagi-go -d 10s -runs 3`.
BENCH_HTTP_FLAGS ?= -app examples/hello-go,examples/hello-c

bench: build examples
	@set -e; for d in bench/*/; do \
		ls $$d*.go >/dev/null 2>&1 || continue; \
		case $$d in bench/http/) flags="$(BENCH_HTTP_FLAGS)";; *) flags="";; esac; \
		echo "== go run ./$${d%/} $$flags"; \
		$(GO) run ./$${d%/} $$flags; \
	done

clean:
	rm -rf bin
