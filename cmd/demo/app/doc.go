// SPDX-License-Identifier: Apache-2.0

// Package app is the demo program: Run parses the flags, builds a client the
// chosen way (client-go, direct REST or a kubectl proxy sidecar), asks the API
// server what the docs page asks, and prints a report. main only wires Run to
// the process (arguments, streams, signals, exit code), so tests call Run.
//
// Exit codes: 0 success; 2 bad usage; 3 not in a cluster or configuration
// unreadable (service variables, token, CA, namespace, kubeconfig); 4 the API
// server refused a request or could not be reached.
//
// The program never prints the service-account token, nor its length.
package app
