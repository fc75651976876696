// SPDX-License-Identifier: Apache-2.0

//go:build !linux

package serviceaccount

import (
	"os"
	"testing"
)

// asUnprivileged runs f. Only Linux has per-thread filesystem uids
// (unprivileged_linux_test.go); as root elsewhere the case cannot fail, so
// it fails the test instead of passing unseen.
func asUnprivileged(t *testing.T, f func()) {
	t.Helper()
	if os.Geteuid() == 0 {
		t.Fatal("as root, file modes are checked only on Linux (setfsuid); run this test as another user")
	}
	f()
}
