// SPDX-License-Identifier: Apache-2.0

// Command example-controller stamps a hash of their data on the ConfigMaps of
// its namespace labelled incluster.dev/hash=true, with leader election, a
// safe handoff, scoped informers, an RBAC preflight and probes (package
// controller). See package app for the flags and exit codes.
package main

import (
	"context"
	"os"

	"github.com/incluster/incluster/cmd/example-controller/app"
	"github.com/incluster/incluster/pkg/controller"
)

func main() {
	// SIGTERM or SIGINT: stop, release the lease, exit 0; a second one: exit 1 at once.
	ctx := controller.SignalContext(context.Background())
	os.Exit(app.Run(ctx, os.Args[1:], os.Stdout, os.Stderr))
}
