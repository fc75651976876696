// SPDX-License-Identifier: Apache-2.0

// Command dnscheck resolves names the way a pod does (the pure-Go resolver
// reads /etc/resolv.conf: nameserver, search domains, ndots) and prints one
// line per name. It exists because the local cluster's images have no shell
// and no nslookup: the restore test runs it as a pod to prove that
// kubernetes.default.svc resolves, and local-cluster.sh runs it on the host
// with -server to ask the CoreDNS pod directly.
//
//	dnscheck [-server IP:53] [-timeout 30s] NAME...
package main

import (
	"context"
	"flag"
	"fmt"
	"net"
	"os"
	"time"
)

func main() {
	server := flag.String("server", "", "ask this DNS server (IP:port) instead of the one in /etc/resolv.conf")
	timeout := flag.Duration("timeout", 30*time.Second, "retry each name until this much time has passed")
	flag.Parse()
	if flag.NArg() == 0 {
		fmt.Fprintln(os.Stderr, "usage: dnscheck [-server IP:53] [-timeout 30s] NAME...")
		os.Exit(2)
	}
	r := &net.Resolver{PreferGo: true}
	if *server != "" {
		r.Dial = func(ctx context.Context, network, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, network, *server)
		}
	}
	failed := false
	for _, n := range flag.Args() {
		addrs, err := lookup(r, n, *timeout)
		if err != nil {
			fmt.Printf("%s: %v\n", n, err)
			failed = true
			continue
		}
		fmt.Printf("%s resolves to %v\n", n, addrs)
	}
	if failed {
		os.Exit(1)
	}
}

func lookup(r *net.Resolver, name string, timeout time.Duration) ([]string, error) {
	deadline := time.Now().Add(timeout)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		addrs, err := r.LookupHost(ctx, name)
		cancel()
		if err == nil || time.Now().After(deadline) {
			return addrs, err
		}
		time.Sleep(time.Second)
	}
}
