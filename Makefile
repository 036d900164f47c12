# Build, test and install the Go replacements of vif-route-qubes and
# qubes-setup-dnat-to-ns. Run `make help` for the targets.

GO        ?= go
PREFIX    ?= /usr
SYSCONFDIR ?= /etc
DESTDIR   ?=
VERSION   ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo unknown)
MODULE    := github.com/qubes-netvm/qnet
LDFLAGS   := -s -w -buildid= -X $(MODULE)/pkg/version.Version=$(VERSION)
GOFLAGS_BUILD := -trimpath -buildvcs=false -ldflags '$(LDFLAGS)'
BINARIES  := vif-route-qubes qubes-setup-dnat-to-ns
SHELL_FILES := $(shell git ls-files '*.sh' .ci/run xen-scripts 2>/dev/null)

export PATH := /usr/local/go/bin:/usr/sbin:/sbin:$(PATH)

.PHONY: all build test deps install lint help FORCE

all: build

help:
	@echo "make build    static binaries into bin/"
	@echo "make test     install missing test packages (as root), then run every test"
	@echo "make install  install into DESTDIR/PREFIX at upstream's paths"
	@echo "make lint     gofmt, go vet, shellcheck"

build: $(BINARIES:%=bin/%)

bin/%: FORCE
	CGO_ENABLED=0 $(GO) build $(GOFLAGS_BUILD) -o $@ ./cmd/$*

deps:
	@scripts/install-deps.sh

test: deps build lint
	$(GO) test -count=1 -timeout 20m ./...

lint:
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed: $$out"; exit 1; fi
	$(GO) vet ./...
	@if [ -n "$(SHELL_FILES)" ]; then shellcheck $(SHELL_FILES); fi

install: build
	install -D -m 0755 bin/vif-route-qubes $(DESTDIR)$(SYSCONFDIR)/xen/scripts/vif-route-qubes
	install -D -m 0755 bin/qubes-setup-dnat-to-ns $(DESTDIR)$(PREFIX)/lib/qubes/qubes-setup-dnat-to-ns
