// SPDX-License-Identifier: Apache-2.0

package controller

import (
	"context"
	"math"
	"os"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/KimMachineGun/automemlimit/memlimit"
)

// This file owns the Go memory limit. A controller's memory peaks while its
// informers decode their initial lists: the Go heap may grow to about twice
// the live heap before a collection (GOGC=100), and a container whose limit
// sits between the two is OOMKilled at start. With a soft memory limit
// (GOMEMLIMIT) the runtime collects harder as it nears the limit instead.
// Run sets it from the container's memory limit, as the automemlimit
// library does (it is that library).

// DefaultMemoryLimitRatio is the part of the container's memory limit Run
// gives the Go runtime as its soft limit: the rest is for what the runtime
// does not count (the binary, thread stacks, cgo) and for headroom.
const DefaultMemoryLimitRatio = 0.9

// memoryLimitRefresh is how often Run reads the container's limit again (a
// pod's resources can be resized in place).
const memoryLimitRefresh = time.Minute

// WithMemoryLimitRatio sets the part of the container's memory limit (its
// cgroup's, v2 or v1) that Run gives the Go runtime as its soft memory
// limit (runtime/debug.SetMemoryLimit), instead of 0.9; 0 turns it off.
// Run leaves the limit alone when GOMEMLIMIT is set, when AUTOMEMLIMIT=off
// (automemlimit's switch; AUTOMEMLIMIT=0.8 overrides the ratio), and when
// the container has no limit. The limit is process-wide.
func WithMemoryLimitRatio(ratio float64) Option {
	return func(o *options) { o.memoryLimitRatio = ratio }
}

// setMemoryLimit sets the Go memory limit from the container's, and keeps
// it up to date until ctx ends; it logs what it did.
func (m *Manager) setMemoryLimit(ctx context.Context) {
	ratio := m.o.memoryLimitRatio
	switch {
	case ratio == 0:
		m.log.Info("memory limit: not set (WithMemoryLimitRatio(0))")
		return
	case os.Getenv("GOMEMLIMIT") != "":
		m.log.Info("memory limit: GOMEMLIMIT from the environment", "GOMEMLIMIT", os.Getenv("GOMEMLIMIT"))
		return
	case os.Getenv("AUTOMEMLIMIT") == "off":
		m.log.Info("memory limit: not set (AUTOMEMLIMIT=off)")
		return
	}
	if v, ok := os.LookupEnv("AUTOMEMLIMIT"); ok { // automemlimit's override of the ratio
		if r, err := strconv.ParseFloat(v, 64); err == nil {
			ratio = r
		}
	}
	var container atomic.Uint64 // what the provider last said
	provider := func() (uint64, error) {
		l, err := m.memoryProvider()
		if err == nil {
			container.Store(l)
		}
		return l, err
	}
	limit, err := memlimit.Set(memlimit.WithProvider(provider), memlimit.WithRatio(ratio),
		memlimit.WithRefreshInterval(ctx, memoryLimitRefresh))
	switch {
	case err != nil:
		m.log.Warn("memory limit: cannot read the container's memory limit; GOMEMLIMIT not set: set it in the pod's env, or WithMemoryLimitRatio(0) to silence this", "err", err)
	case limit == math.MaxInt64:
		m.log.Info("memory limit: the container has none; GOMEMLIMIT not set")
	default:
		m.log.Info("memory limit: GOMEMLIMIT set from the container's memory limit",
			"GOMEMLIMIT", limit, "containerLimit", container.Load(), "ratio", ratio)
	}
}
