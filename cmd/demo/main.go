// SPDX-License-Identifier: Apache-2.0

// Command demo runs in a pod, reaches the Kubernetes API the way the docs page
// "Accessing the Kubernetes API from a Pod" describes, and prints what it
// found. See package app for the flags, the output and the exit codes.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/incluster/incluster/cmd/demo/app"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	code := app.Run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}
