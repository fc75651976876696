# SPDX-License-Identifier: Apache-2.0
# shellcheck shell=bash
# go-env.sh, sourced by the scripts in hack/ and by .ci/run: finds Go (sudo
# often drops /usr/local/go/bin from PATH) and selects the Go release our
# code is built and checked with, named in hack/go-version (README.md, "Go
# version"); the go command fetches it from the module proxy. A GOTOOLCHAIN
# already set wins.
if ! command -v go >/dev/null && [[ -x /usr/local/go/bin/go ]]; then PATH=/usr/local/go/bin:${PATH}; fi
GOTOOLCHAIN=${GOTOOLCHAIN:-$(<"$(dirname "${BASH_SOURCE[0]}")/go-version")}
export GOTOOLCHAIN
