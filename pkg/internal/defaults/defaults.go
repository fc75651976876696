// SPDX-License-Identifier: Apache-2.0

// Package defaults holds the settings that package incluster and package
// direct share, so that each is written once.
package defaults

import "time"

// RequestTimeout bounds each request of incluster's helpers
// (incluster.DefaultRequestTimeout) and of a direct.Client
// (direct.DefaultTimeout).
const RequestTimeout = 10 * time.Second
