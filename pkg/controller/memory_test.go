// SPDX-License-Identifier: Apache-2.0

package controller

import (
	"errors"
	"math"
	"os"
	"runtime/debug"
	"strings"
	"testing"

	"github.com/KimMachineGun/automemlimit/memlimit"
	"k8s.io/client-go/kubernetes/fake"
)

// Run's memory limit: 90% of the container's by default, the ratio of
// WithMemoryLimitRatio, nothing when off, when GOMEMLIMIT or AUTOMEMLIMIT=off
// say so, or when the container has no limit; a limit that cannot be read
// is a WARN, not a failure.
func TestMemoryLimit(t *testing.T) {
	const mib = 1 << 20
	container := memlimit.Limit(200 * mib)
	tests := []struct {
		name     string
		env      map[string]string
		opts     []Option
		provider memlimit.Provider
		want     int64 // the Go memory limit after; 0: unchanged
		log      string
	}{
		{name: "default", provider: container, want: 180 * mib, log: "GOMEMLIMIT set from the container's memory limit"},
		{name: "ratio", opts: []Option{WithMemoryLimitRatio(0.5)}, provider: container, want: 100 * mib, log: "containerLimit=209715200"},
		{name: "off", opts: []Option{WithMemoryLimitRatio(0)}, provider: container, log: "not set (WithMemoryLimitRatio(0))"},
		{name: "GOMEMLIMIT", env: map[string]string{"GOMEMLIMIT": "64MiB"}, provider: container, log: "GOMEMLIMIT from the environment"},
		{name: "AUTOMEMLIMIT off", env: map[string]string{"AUTOMEMLIMIT": "off"}, provider: container, log: "AUTOMEMLIMIT=off"},
		{name: "AUTOMEMLIMIT ratio", env: map[string]string{"AUTOMEMLIMIT": "0.25"}, provider: container, want: 50 * mib, log: "ratio=0.25"},
		{name: "no limit", provider: func() (uint64, error) { return 0, memlimit.ErrNoLimit }, want: math.MaxInt64, log: "the container has none"},
		{name: "unreadable", provider: func() (uint64, error) { return 0, errors.New("no cgroup") }, log: "level=WARN msg=\"memory limit: cannot read"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := debug.SetMemoryLimit(-1)
			t.Cleanup(func() { debug.SetMemoryLimit(before) })
			const unchanged = 123 * mib
			debug.SetMemoryLimit(unchanged)
			for _, k := range []string{"GOMEMLIMIT", "AUTOMEMLIMIT"} {
				t.Setenv(k, "") // restored after the test
				_ = os.Unsetenv(k)
			}
			for k, v := range tt.env {
				t.Setenv(k, v)
			}
			m, logs := newTestManager(t, fake.NewClientset(), "a", tt.opts...)
			m.memoryProvider = tt.provider
			m.setMemoryLimit(t.Context())
			want := tt.want
			if want == 0 {
				want = unchanged
			}
			if got := debug.SetMemoryLimit(-1); got != want {
				t.Errorf("Go memory limit %d, want %d", got, want)
			}
			if !strings.Contains(logs.String(), tt.log) {
				t.Errorf("log lacks %q:\n%s", tt.log, logs)
			}
		})
	}
	if _, err := newManager(fake.NewClientset(), testNS, allowAll, "l", WithIdentity("a"), WithMemoryLimitRatio(1.5)); err == nil {
		t.Error("a memory limit ratio of 1.5 was accepted")
	}
}
