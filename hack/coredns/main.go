// SPDX-License-Identifier: Apache-2.0

// Command coredns is CoreDNS v1.15.0 with only the plugins the local cluster's
// Corefile uses (see ../manifests/coredns.yaml). It has no forward plugin on
// purpose: names outside the cluster are never sent to an upstream resolver.
package main

import (
	"github.com/coredns/coredns/core/dnsserver"
	"github.com/coredns/coredns/coremain"

	_ "github.com/coredns/coredns/plugin/cache"
	_ "github.com/coredns/coredns/plugin/errors"
	_ "github.com/coredns/coredns/plugin/health"
	_ "github.com/coredns/coredns/plugin/kubernetes"
	_ "github.com/coredns/coredns/plugin/loadbalance"
	_ "github.com/coredns/coredns/plugin/log"
	_ "github.com/coredns/coredns/plugin/loop"
	_ "github.com/coredns/coredns/plugin/metrics"
	_ "github.com/coredns/coredns/plugin/ready"
	_ "github.com/coredns/coredns/plugin/reload"
	_ "github.com/coredns/coredns/plugin/template"
)

// directives is the plugin chain order, a subsequence of CoreDNS's plugin.cfg.
var directives = []string{
	"reload", "ready", "health", "prometheus", "errors", "log",
	"loadbalance", "cache", "template", "kubernetes", "loop",
}

func main() {
	dnsserver.Directives = directives
	coremain.Run()
}
