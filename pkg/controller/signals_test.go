// SPDX-License-Identifier: Apache-2.0

package controller

import (
	"context"
	"os"
	"syscall"
	"testing"
)

func TestSignals(t *testing.T) {
	sigs := make(chan os.Signal)
	exits := make(chan int, 1)
	ctx := notifyContext(context.Background(), sigs, func(code int) { exits <- code })

	sigs <- syscall.SIGTERM // received: the first cancels the context
	within(t, ctx.Done(), "the context to be cancelled")
	if cause := context.Cause(ctx); cause == nil || cause.Error() != "received terminated" {
		t.Errorf("cause = %v", cause)
	}
	select {
	case code := <-exits:
		t.Fatalf("exit(%d) after one signal", code)
	default:
	}
	sigs <- os.Interrupt // the second exits at once
	if code := within(t, exits, "exit"); code != ExitForced || ExitForced != 1 {
		t.Errorf("exit(%d), want 1", code)
	}
}
