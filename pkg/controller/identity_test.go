// SPDX-License-Identifier: Apache-2.0

package controller

import (
	"errors"
	"strings"
	"testing"
	"time"

	"k8s.io/client-go/kubernetes/fake"
)

func TestIdentity(t *testing.T) {
	env := func(v string) func(string) string {
		return func(k string) string {
			if k == PodNameEnv {
				return v
			}
			return ""
		}
	}
	host := func(h string, err error) func() (string, error) { return func() (string, error) { return h, err } }
	suffix := func() string { return "x2k4q" }
	tests := []struct {
		name    string
		pod     string
		host    string
		hostErr error
		want    string
		wantErr string
	}{
		{name: "pod", pod: "ctl-7d9f8b6c5-abcde", host: "node-1", want: "ctl-7d9f8b6c5-abcde_x2k4q"},
		{name: "outside a pod", host: "laptop", want: "laptop_x2k4q"},
		{name: "nothing", hostErr: errors.New("no uts"), wantErr: "POD_NAME is not set and the hostname is unknown"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := identity(env(tt.pod), host(tt.host, tt.hostErr), suffix)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("identity = %q, %v; want error %q", got, err, tt.wantErr)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Errorf("identity = %q, %v; want %q", got, err, tt.want)
			}
		})
	}

	// The real one: POD_NAME, "_", 5 random characters, a new suffix each call.
	t.Setenv(PodNameEnv, "pod-a")
	a, err := Identity()
	if err != nil {
		t.Fatal(err)
	}
	b, _ := Identity()
	if !strings.HasPrefix(a, "pod-a_") || len(a) != len("pod-a_")+identitySuffixLen || a == b {
		t.Errorf("Identity() = %q then %q", a, b)
	}
}

func TestOptions(t *testing.T) {
	d, err := newManager(fake.NewClientset(), testNS, allowAll, "lease", WithIdentity("me"))
	if err != nil {
		t.Fatal(err)
	}
	if o := d.o; o.leaseDuration != 15*time.Second || o.renewDeadline != 10*time.Second || o.retryPeriod != 2*time.Second ||
		o.shutdownTimeout != 20*time.Second || o.probeAddress != ":8081" || o.preflightInterval != 3*time.Second || o.transform == nil {
		t.Errorf("defaults: %+v", o)
	}

	tests := []struct {
		name, ns, lease string
		opts            []Option
		want            string
	}{
		{"lease not longer than renew", testNS, "l", []Option{WithLeaseDuration(10 * time.Second)},
			"the lease duration (10s) must be longer than the renew deadline (10s)"},
		{"renew too close to retry", testNS, "l", []Option{WithRenewDeadline(2400 * time.Millisecond)},
			"the renew deadline (2.4s) must be longer than 1.2 x the retry period (2s)"},
		{"negative retry", testNS, "l", []Option{WithRetryPeriod(-time.Second)}, "the retry period is -1s: want a positive duration"},
		{"zero shutdown timeout", testNS, "l", []Option{WithShutdownTimeout(0)}, "the shutdown timeout is 0s: want a positive duration"},
		{"fractional lease", testNS, "l", []Option{WithLeaseDuration(15500 * time.Millisecond)}, "must be whole seconds"},
		{"bad lease name", testNS, "My_Lease", nil, `lease name "My_Lease"`},
		{"no namespace", "", "l", nil, "no namespace"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := newManager(fake.NewClientset(), tt.ns, allowAll, tt.lease, append([]Option{WithIdentity("me")}, tt.opts...)...)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("newManager = %v, want an error with %q", err, tt.want)
			}
		})
	}
}
