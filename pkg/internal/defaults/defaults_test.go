// SPDX-License-Identifier: Apache-2.0

package defaults_test

import (
	"testing"

	"github.com/incluster/incluster/pkg/direct"
	"github.com/incluster/incluster/pkg/incluster"
	"github.com/incluster/incluster/pkg/internal/defaults"
)

// TestOneRequestTimeout: both ways bound a request by the same default.
func TestOneRequestTimeout(t *testing.T) {
	if incluster.DefaultRequestTimeout != defaults.RequestTimeout || direct.DefaultTimeout != defaults.RequestTimeout {
		t.Errorf("incluster %v, direct %v, want both %v", incluster.DefaultRequestTimeout, direct.DefaultTimeout, defaults.RequestTimeout)
	}
}
