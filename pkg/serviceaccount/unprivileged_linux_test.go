// SPDX-License-Identifier: Apache-2.0

package serviceaccount

import (
	"fmt"
	"os"
	"runtime"
	"syscall"
	"testing"
)

// nobody is the filesystem user asUnprivileged reads as (nobody on Debian).
const nobody = 65534

// asUnprivileged runs f on an OS thread of its own whose filesystem user is
// nobody, when the test runs as root; otherwise it just runs f. Setting
// the filesystem uid to non-zero clears the thread's CAP_DAC_OVERRIDE and
// CAP_DAC_READ_SEARCH (capabilities(7)), so the kernel checks file modes for
// root as for anyone: the read of a mode-0 file fails with EACCES, as in a
// pod whose user may not read the mount. The thread is never handed back
// to the Go scheduler: the goroutine ends locked to it, so it exits.
func asUnprivileged(t *testing.T, f func()) {
	t.Helper()
	if os.Geteuid() != 0 {
		f()
		return
	}
	failed := make(chan string, 1)
	go func() {
		runtime.LockOSThread() // and never unlocked: the thread dies with the goroutine
		syscall.RawSyscall(syscall.SYS_SETFSUID, nobody, 0, 0)
		// setfsuid reports no error; it returns the previous fsuid, and
		// an invalid uid (-1) changes nothing.
		if prev, _, _ := syscall.RawSyscall(syscall.SYS_SETFSUID, ^uintptr(0), 0, 0); prev != nobody {
			failed <- fmt.Sprintf("setfsuid(%d) did not take: the filesystem uid is %d", nobody, prev)
			return
		}
		defer close(failed)
		f()
	}()
	if msg, ok := <-failed; ok {
		t.Fatal(msg)
	}
}
