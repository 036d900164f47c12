# Build, test, benchmark, package and install the Go replacements of
# vif-route-qubes and qubes-setup-dnat-to-ns. `make help` lists the targets.

GO          ?= go
PREFIX      ?= /usr
SYSCONFDIR  ?= /etc
MANDIR      ?= $(PREFIX)/share/man
UNITDIR     ?= $(PREFIX)/lib/systemd/system
DESTDIR     ?=
VERSION     ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo unknown)
MODULE      := github.com/qubes-netvm/qnet
LDFLAGS     := -s -w -buildid= -X $(MODULE)/internal/version.Version=$(VERSION)
GOFLAGS_BUILD := -trimpath -buildvcs=false -ldflags '$(LDFLAGS)'
BINARIES    := vif-route-qubes qubes-setup-dnat-to-ns
SHELL_FILES := $(shell git ls-files '*.sh' .ci/run xen-scripts/qubes-nmhook vmtest/init 'packaging/debian/p*' packaging/rpm/qnet-takeover 2>/dev/null)
KEEP        ?=

export PATH := /usr/local/go/bin:/usr/sbin:/sbin:$(PATH)

.PHONY: all build test deps install lint bench vmtest demo demo-clean deb rpm check-reproducible help FORCE

all: build

help:
	@echo "make demo      a whole network qube in namespaces, end to end (as root; KEEP=1 leaves it up)"
	@echo "make test      install missing test packages (as root), then run every test"
	@echo "make build     static binaries into bin/"
	@echo "make install   install into DESTDIR at upstream's paths"
	@echo "make lint      gofmt, go vet, shellcheck"
	@echo "make bench     whole-process timings, peak RSS, binary sizes (as root)"
	@echo "make vmtest    the kernel tests on Debian's stock kernel under qemu (as root)"
	@echo "make deb       build the Debian package into dist/"
	@echo "make rpm       build the RPM for Fedora templates into dist/ (rpmbuild)"
	@echo "make check-reproducible  two clean builds, byte-identical binaries and .deb"
	@echo "make demo-clean  remove what 'make demo KEEP=1' left up"

build: $(BINARIES:%=bin/%)

bin/%: FORCE
	CGO_ENABLED=0 $(GO) build $(GOFLAGS_BUILD) -o $@ ./cmd/$*

deps:
	@scripts/install-deps.sh

test: deps build lint
	$(GO) test -count=1 -timeout 30m ./...

lint:
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed: $$out"; exit 1; fi
	$(GO) vet ./...
	$(GO) vet -tags vmtest ./vmtest/...
	@if [ -n "$(SHELL_FILES)" ]; then shellcheck $(SHELL_FILES); fi

bench: build
	scripts/bench.sh

vmtest: build
	vmtest/run.sh

demo:
	scripts/demo.sh $(if $(KEEP),--keep)

demo-clean:
	scripts/demo.sh --clean

deb:
	@scripts/build-deb.sh

rpm:
	@scripts/build-rpm.sh

check-reproducible:
	scripts/check-reproducible.sh

install: build
	install -D -m 0755 bin/vif-route-qubes $(DESTDIR)$(SYSCONFDIR)/xen/scripts/vif-route-qubes
	install -D -m 0755 bin/qubes-setup-dnat-to-ns $(DESTDIR)$(PREFIX)/lib/qubes/qubes-setup-dnat-to-ns
	install -D -m 0755 xen-scripts/qubes-nmhook $(DESTDIR)$(SYSCONFDIR)/NetworkManager/dispatcher.d/qubes-nmhook
	install -D -m 0644 xen-scripts/qubes-setup-dnat-to-ns-watch.service $(DESTDIR)$(UNITDIR)/qubes-setup-dnat-to-ns-watch.service
	install -D -m 0644 -t $(DESTDIR)$(MANDIR)/man8 man/vif-route-qubes.8 man/qubes-setup-dnat-to-ns.8
