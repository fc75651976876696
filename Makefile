# incluster: see README.md. Every target is a thin wrapper; the logic lives in
# hack/ (scripts) and in Go packages, so CI and people run the same commands.

SHELL := /bin/bash
GO ?= go
OUT ?= _output
DEMO_IMAGE ?= incluster-demo:dev
CLUSTER ?=
# KIND_NODE_IMAGE=offline: kind with the node image built here (hack/kind.sh).
KIND_NODE_IMAGE ?=
# The Go release with the latest security fixes (hack/go-version, also read
# by hack/go-env.sh), fetched by the go command from the module proxy.
# go.mod still allows 1.26 for users of the library.
GOTOOLCHAIN ?= $(file < hack/go-version)
# KUBERNETES_VERSION, KIND_VERSION, COREDNS_VERSION: one place for the
# versions of what hack/ builds and runs (hack/lib.sh reads it too).
include hack/versions
export DEMO_IMAGE GOTOOLCHAIN KIND_NODE_IMAGE

.PHONY: help all build test lint image images cluster-up cluster-down cluster-status test-cluster e2e e2e-multinode demo fuzz bench kind-check clean

# `make` alone prints the targets; `make all` still builds.
.DEFAULT_GOAL := help

## help: this list of targets (the default goal).
# A comment may name several targets ("## a / b: text") and go on over "## "
# lines. Plain awk, as macOS has it.
help:
	@echo 'usage: make TARGET [VARIABLE=value ...]  (see README.md)'
	@awk -v out='$(OUT)' -v kind='$(KIND_VERSION)' ' \
		function show(name, text) { gsub(/\$$\(OUT\)/, out, text); gsub(/\$$\(KIND_VERSION\)/, kind, text); \
			if (length(name) > 16) { printf "  %s\n", name; name = "" } \
			printf "  %-16s %s\n", name, text } \
		!in_doc && /^## [a-z][-a-z0-9]*( \/ [a-z][-a-z0-9]*)*:/ { \
			i = index($$0, ":"); text = substr($$0, i + 1); sub(/^ +/, "", text); \
			show(substr($$0, 4, i - 4), text); in_doc = 1; next } \
		in_doc && /^## / { show("", substr($$0, 4)); next } \
		{ in_doc = 0 }' $(firstword $(MAKEFILE_LIST))

all: build

## build: compile the demo program into $(OUT)/bin/demo (static, stripped).
build:
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags "-s -w" -o $(OUT)/bin/demo ./cmd/demo

## test: unit tests with the race detector. No root, no cluster. Also the
## tests of the tools in hack/cmd (their own module), of hack/host-state.sh,
## and the arm64 and multi-platform images (hack/test-images.sh).
test:
	$(GO) test -race -count=1 ./...
	cd hack && $(GO) test -race -count=1 $$($(GO) list -f '{{if .TestGoFiles}}{{.ImportPath}}{{end}}' ./cmd/...)
	hack/test-host-state.sh
	hack/test-images.sh

## bench: latency, connections, memory, size, load and init cost against the
## local cluster, next to curl, kubectl and client-go (root); writes bench/results.md.
bench:
	hack/bench.sh

## fuzz: every fuzz target for FUZZTIME (default 1m) each.
fuzz:
	hack/fuzz.sh

## lint: gofmt, go vet, staticcheck, govulncheck, shellcheck, actionlint (the
## workflows) and kind-config.yaml (tools pinned in hack/tools).
lint:
	hack/lint.sh

## image: the demo, example-controller and scrape images as tarballs in $(OUT)/images/, for
## this host's platform or PLATFORMS (e.g. linux/amd64,linux/arm64: one image index).
image:
	hack/images.sh demo

## images: every image the clusters need (demo, example-controller, scrape, pause, coredns, kubectl, dnscheck).
images:
	hack/images.sh all

## demo: bring a cluster up (kind with Docker, else local), deploy deploy/base, print the report.
demo:
	hack/demo.sh $(CLUSTER)

## e2e: the end-to-end suite in a real cluster. CLUSTER=local|kind (default:
## kind where `docker info` works, else local). With CLUSTER=kind,
## KIND_NODE_IMAGE=offline builds the node image here and needs no registry.
e2e:
	hack/e2e.sh $(CLUSTER)

## e2e-multinode: the sharded controller's cases and those that stop a node,
## in a kind cluster of a control plane and 2 workers (needs Docker; with
## KIND_NODE_IMAGE=offline, none and no registry).
e2e-multinode:
	hack/e2e.sh multinode

## cluster-up / cluster-down / cluster-status: the local single-node cluster (root).
cluster-up:
	hack/local-cluster.sh up

cluster-down:
	hack/local-cluster.sh down

cluster-status:
	hack/local-cluster.sh status

## kind-check: kind-config.yaml loads the way kind $(KIND_VERSION) loads it (no Docker needed).
kind-check:
	hack/kind.sh check

## test-cluster: up, a pod, DNS, down, and the host restored (root).
test-cluster:
	hack/test-local-cluster.sh

## clean: remove $(OUT).
clean:
	rm -rf $(OUT)
