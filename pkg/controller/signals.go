// SPDX-License-Identifier: Apache-2.0

package controller

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"
)

// ExitForced is the exit code after a second SIGTERM or SIGINT (as
// controller-runtime's signal handler).
const ExitForced = 1

// SignalContext returns a context that is cancelled on the first SIGTERM or
// SIGINT; give it to Run, which then shuts down: it stops the work, waits
// for it, releases the lease and returns. A second signal exits the process
// at once with ExitForced, without releasing the lease. Call it once, in main.
func SignalContext(parent context.Context) context.Context {
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, syscall.SIGTERM, os.Interrupt)
	return notifyContext(parent, sigs, os.Exit)
}

// notifyContext cancels the context it returns on the first value from sigs
// and calls exit(ExitForced) on the second.
func notifyContext(parent context.Context, sigs <-chan os.Signal, exit func(int)) context.Context {
	ctx, cancel := context.WithCancelCause(parent)
	go func() {
		s := <-sigs
		cancel(fmt.Errorf("received %v", s))
		<-sigs
		exit(ExitForced)
	}()
	return ctx
}
