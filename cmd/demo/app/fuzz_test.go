// SPDX-License-Identifier: Apache-2.0

package app

import (
	"io"
	"strings"
	"testing"
)

// FuzzParseFlags: whatever the command line, parsing does not panic, exits
// 0 (help) or 2 (usage) when it stops, and lets through only valid options.
// Arguments are separated by NUL bytes in the fuzzed string.
func FuzzParseFlags(f *testing.F) {
	for _, s := range []string{
		"", "--help", "-h", "--via=rest", "--via=proxy\x00--proxy-url=http://127.0.0.1:8001", "-o\x00json",
		"--watch\x00--interval=1s", "--interval=0", "--interval=-1s", "--kubeconfig=", "--via=rest\x00--kubeconfig=x",
		"--read-pods=kube-system", "--read-pods=Bad", "--server=10.0.0.1:6443", "--bogus", "extra", "-o=yaml", "--via",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, line string) {
		var args []string
		if line != "" {
			args = strings.Split(line, "\x00")
		}
		opts, code, done := parseFlags(args, io.Discard, io.Discard)
		if done {
			if code != ExitOK && code != ExitUsage {
				t.Errorf("%q: exit code %d when parsing stops", args, code)
			}
			return
		}
		if opts.via != ViaClientGo && opts.via != ViaREST && opts.via != ViaProxy {
			t.Errorf("%q: via %q let through", args, opts.via)
		}
		if opts.output != "json" && opts.output != "text" {
			t.Errorf("%q: output %q let through", args, opts.output)
		}
		if opts.interval <= 0 {
			t.Errorf("%q: interval %s let through", args, opts.interval)
		}
		if opts.kubeconfig != nil && opts.via != ViaClientGo {
			t.Errorf("%q: --kubeconfig with --via=%s let through", args, opts.via)
		}
	})
}
