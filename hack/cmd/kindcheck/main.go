// SPDX-License-Identifier: Apache-2.0

// Command kindcheck checks kind-config.yaml without Docker: that kind would
// load it, and that it is the cluster `make e2e CLUSTER=kind` expects. It is
// run by `hack/kind.sh check`.
//
// kind loads a config with sigs.k8s.io/kind/pkg/internal/apis/config/encoding.Load,
// which this module cannot import (internal). The public entry points
// (cluster.CreateWithConfigFile, cluster.CreateWithRawConfig) only run
// inside Provider.Create, which goes on to create the cluster with Docker once
// the config has loaded: kind has no public load-only call. So this program
// repeats Load step by step, on kind's public v1alpha4 types and with the YAML
// library and decoder settings kind uses:
//
//  1. read apiVersion and kind; only kind.x-k8s.io/v1alpha4 Cluster is known;
//  2. strict decode (go.yaml.in/yaml/v3, KnownFields): an unknown or
//     misspelt field is an error, as in `kind create cluster`;
//  3. v1alpha4.SetDefaultsCluster, as kind does before converting;
//  4. the checks of kind's (internal) Cluster.Validate that apply to
//     v1alpha4 fields: name, ipFamily, subnets, kubeProxyMode, node roles,
//     images, ports, at least one control-plane node.
//
// Then the project's own rules: exactly one node, a control plane, whose image
// is kindest/node:v1.37.x pinned by a sha256 digest; pod and service subnets
// apart from the local cluster's (hack/local-cluster.sh). The kind release
// this program is built with must be the one hack/kind.sh installs
// (-kind-version), so that the loader and the kind binary agree.
//
// With -workers N -out OUT it adds N worker nodes, of the control plane's
// image, to the config and writes the result to OUT (with -patch, after the
// patch): the multi-node cluster of `make e2e-multinode`. The project's rule
// is then one control plane followed by exactly N workers.
//
// With -patch FILE -out OUT it first adds FILE (hack/kind-offline.yaml: what
// the project's machines need to run kind offline) to the config and writes
// the result to OUT, then checks OUT as above. A patch may only set
// networking.disableDefaultCNI and add containerdConfigPatches and
// kubeadmConfigPatches (appended after the config's own); anything else in it
// is an error, so that the offline cluster stays the one of kind-config.yaml.
package main

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"reflect"
	"regexp"
	"runtime/debug"
	"strings"

	yaml "go.yaml.in/yaml/v3"
	"sigs.k8s.io/kind/pkg/apis/config/defaults"
	"sigs.k8s.io/kind/pkg/apis/config/v1alpha4"
)

// The local cluster's networks (hack/local-cluster.sh POD_CIDR, SVC_CIDR).
const (
	localPodCIDR = "10.244.0.0/24"
	localSvcCIDR = "10.96.0.0/16"
)

var (
	// As kind's validNameRE (pkg/internal/apis/config/validate.go).
	validName = regexp.MustCompile(`^[a-z0-9.-]+$`)
	// The node image the e2e suite is written for: Kubernetes 1.37, by digest.
	nodeImage = regexp.MustCompile(`^kindest/node:v1\.37\.[0-9]+@sha256:[0-9a-f]{64}$`)
)

func main() {
	name := flag.String("name", "incluster", "cluster name, as given to kind create cluster --name (overrides the file's)")
	kindVersion := flag.String("kind-version", "", "kind release hack/kind.sh installs; must be the one this program is built with")
	patch := flag.String("patch", "", "add this partial config (hack/kind-offline.yaml) and write the result to -out")
	out := flag.String("out", "", "with -patch or -workers: where to write the resulting config")
	workers := flag.Int("workers", 0, "add this many worker nodes (the control plane's image) and write the result to -out")
	flag.Usage = func() {
		fmt.Fprintf(flag.CommandLine.Output(), "usage: kindcheck [flags] kind-config.yaml\n")
		flag.PrintDefaults()
	}
	flag.Parse()
	if flag.NArg() != 1 {
		flag.Usage()
		os.Exit(2)
	}
	path := flag.Arg(0)
	fail := func(err error) {
		fmt.Fprintf(os.Stderr, "kindcheck: %s: %v\n", path, err)
		os.Exit(1)
	}

	built := kindModuleVersion()
	if *kindVersion != "" && built != *kindVersion {
		fail(fmt.Errorf("built with sigs.k8s.io/kind %s but hack/kind.sh installs %s: make hack/go.mod and KIND_VERSION agree", built, *kindVersion))
	}
	raw, err := os.ReadFile(path)
	if err != nil {
		fail(err)
	}
	if (*patch != "" || *workers > 0) && *out == "" {
		fail(errors.New("-patch and -workers need -out"))
	}
	if *patch != "" {
		if raw, err = applyPatch(raw, *patch); err != nil {
			fail(err)
		}
	}
	if *workers > 0 {
		if raw, err = addWorkers(raw, *workers); err != nil {
			fail(err)
		}
	}
	if *out != "" {
		if err := os.WriteFile(*out, raw, 0o644); err != nil {
			fail(err)
		}
		path = *out
	}
	cfg, err := load(raw)
	if err != nil {
		fail(err)
	}
	if *name != "" {
		cfg.Name = *name // as kind's --name (NameOverride) does
	}
	if errs := validate(cfg); len(errs) > 0 {
		fail(errors.Join(errs...))
	}
	if errs := projectRules(cfg, *workers); len(errs) > 0 {
		fail(errors.Join(errs...))
	}
	note := "not kind's default image"
	if cfg.Nodes[0].Image == defaults.Image {
		note = "kind's default image"
	}
	fmt.Printf("kindcheck: %s: OK (sigs.k8s.io/kind %s loader; cluster %q; %d node(s): %s, %s; pods %s, services %s)\n",
		path, built, cfg.Name, len(cfg.Nodes), cfg.Nodes[0].Image, note,
		cfg.Networking.PodSubnet, cfg.Networking.ServiceSubnet)
}

// load is kind's encoding.Parse for v1alpha4, up to the conversion to the
// internal type (which only copies fields).
func load(raw []byte) (*v1alpha4.Cluster, error) {
	var tm struct {
		Kind       string `yaml:"kind,omitempty"`
		APIVersion string `yaml:"apiVersion,omitempty"`
	}
	if err := yaml.Unmarshal(raw, &tm); err != nil {
		return nil, fmt.Errorf("could not determine kind / apiVersion for config: %w", err)
	}
	if tm.APIVersion != "kind.x-k8s.io/v1alpha4" {
		return nil, fmt.Errorf("unknown apiVersion: %s", tm.APIVersion)
	}
	if tm.Kind != "Cluster" {
		return nil, fmt.Errorf("unknown kind %s for apiVersion: %s", tm.Kind, tm.APIVersion)
	}
	cfg, err := decode(raw)
	if err != nil {
		return nil, err
	}
	v1alpha4.SetDefaultsCluster(cfg)
	return cfg, nil
}

// decode is kind's strict decode: unknown fields are errors.
func decode(raw []byte) (*v1alpha4.Cluster, error) {
	cfg := &v1alpha4.Cluster{}
	d := yaml.NewDecoder(bytes.NewReader(raw))
	d.KnownFields(true)
	if err := d.Decode(cfg); err != nil {
		return nil, fmt.Errorf("unable to decode config: %w", err)
	}
	return cfg, nil
}

// applyPatch adds the partial config in file to the config raw and returns
// the result as YAML (the fields the patch may set: see the package doc).
func applyPatch(raw []byte, file string) ([]byte, error) {
	base, err := decode(raw)
	if err != nil {
		return nil, err
	}
	praw, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	p, err := decode(praw)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", file, err)
	}
	if p.Kind != base.Kind || p.APIVersion != base.APIVersion {
		return nil, fmt.Errorf("%s: is %s %s, want %s %s", file, p.APIVersion, p.Kind, base.APIVersion, base.Kind)
	}
	rest := *p
	rest.Networking.DisableDefaultCNI = false
	rest.ContainerdConfigPatches, rest.KubeadmConfigPatches = nil, nil
	if !reflect.DeepEqual(rest, v1alpha4.Cluster{TypeMeta: p.TypeMeta}) {
		return nil, fmt.Errorf("%s: a patch may only set networking.disableDefaultCNI, containerdConfigPatches and kubeadmConfigPatches", file)
	}
	if p.Networking.DisableDefaultCNI {
		base.Networking.DisableDefaultCNI = true
	}
	base.ContainerdConfigPatches = append(base.ContainerdConfigPatches, p.ContainerdConfigPatches...)
	base.KubeadmConfigPatches = append(base.KubeadmConfigPatches, p.KubeadmConfigPatches...)
	return yaml.Marshal(base)
}

// validate repeats kind's Cluster.Validate and Node.Validate
// (pkg/internal/apis/config/validate.go), except the check of duplicate
// extraPortMappings, which this config does not use.
func validate(c *v1alpha4.Cluster) []error {
	var errs []error
	if !validName.MatchString(c.Name) {
		errs = append(errs, fmt.Errorf("%q is not a valid cluster name, cluster names must match %s", c.Name, validName))
	}
	if c.Networking.APIServerPort != 0 && !validPort(c.Networking.APIServerPort) {
		errs = append(errs, fmt.Errorf("invalid apiServerPort %d", c.Networking.APIServerPort))
	}
	family := c.Networking.IPFamily
	switch family {
	case v1alpha4.IPv4Family, v1alpha4.IPv6Family, v1alpha4.DualStackFamily:
	default:
		errs = append(errs, fmt.Errorf("invalid ipFamily: %s", family))
	}
	if err := validateSubnets(c.Networking.PodSubnet, family); err != nil {
		errs = append(errs, fmt.Errorf("invalid pod subnet: %w", err))
	}
	if err := validateSubnets(c.Networking.ServiceSubnet, family); err != nil {
		errs = append(errs, fmt.Errorf("invalid service subnet: %w", err))
	}
	switch c.Networking.KubeProxyMode {
	// "none" (no kube-proxy) has a constant only in kind's internal types.
	case v1alpha4.IPTablesProxyMode, v1alpha4.IPVSProxyMode, v1alpha4.NFTablesProxyMode, v1alpha4.ProxyMode("none"):
	default:
		errs = append(errs, fmt.Errorf("invalid kubeProxyMode: %s", c.Networking.KubeProxyMode))
	}
	controlPlanes := 0
	for i, n := range c.Nodes {
		switch n.Role {
		case v1alpha4.ControlPlaneRole:
			controlPlanes++
		case v1alpha4.WorkerRole:
		default:
			errs = append(errs, fmt.Errorf("node %d: %q is not a valid node role", i, n.Role))
		}
		if n.Image == "" {
			errs = append(errs, fmt.Errorf("node %d: image is a required field", i))
		}
		for _, m := range n.ExtraPortMappings {
			if !validPort(m.HostPort) || !validPort(m.ContainerPort) {
				errs = append(errs, fmt.Errorf("node %d: invalid port mapping %d:%d", i, m.HostPort, m.ContainerPort))
			}
		}
	}
	if controlPlanes < 1 {
		errs = append(errs, fmt.Errorf("must have at least one %s node", v1alpha4.ControlPlaneRole))
	}
	return errs
}

// validPort is kind's validatePort: -1 lets the runtime pick the port.
func validPort(p int32) bool { return p >= -1 && p <= 65535 }

// validateSubnets is kind's check of a comma-separated subnet list.
func validateSubnets(s string, family v1alpha4.ClusterIPFamily) error {
	var nets []*net.IPNet
	for _, c := range strings.Split(s, ",") {
		_, n, err := net.ParseCIDR(c)
		if err != nil {
			return fmt.Errorf("failed to parse cidr value %q: %w", c, err)
		}
		nets = append(nets, n)
	}
	dual := family == v1alpha4.DualStackFamily
	switch {
	case dual && len(nets) > 2:
		return errors.New("expected one (IPv4 or IPv6) CIDR or two CIDRs from each family for dual-stack networking")
	case dual && len(nets) == 2 && (nets[0].IP.To4() == nil) == (nets[1].IP.To4() == nil):
		return errors.New("expected one (IPv4 or IPv6) CIDR or two CIDRs from each family for dual-stack networking")
	case !dual && len(nets) > 1:
		return errors.New("only one CIDR allowed for single-stack networking")
	case family == v1alpha4.IPv4Family && nets[0].IP.To4() == nil:
		return errors.New("expected IPv4 CIDR for IPv4 family")
	case family == v1alpha4.IPv6Family && nets[0].IP.To4() != nil:
		return errors.New("expected IPv6 CIDR for IPv6 family")
	}
	return nil
}

// addWorkers adds n worker nodes of the (only) control plane's image to the
// config raw and returns the result as YAML.
func addWorkers(raw []byte, n int) ([]byte, error) {
	c, err := decode(raw)
	if err != nil {
		return nil, err
	}
	if len(c.Nodes) != 1 {
		return nil, fmt.Errorf("-workers: want a config of one node to add workers to (got %d nodes)", len(c.Nodes))
	}
	for range n {
		c.Nodes = append(c.Nodes, v1alpha4.Node{Role: v1alpha4.WorkerRole, Image: c.Nodes[0].Image})
	}
	return yaml.Marshal(c)
}

// projectRules are what the e2e suite and the local cluster need: one
// control plane, then workers worker nodes (0: the single-node cluster).
func projectRules(c *v1alpha4.Cluster, workers int) []error {
	var errs []error
	ok := len(c.Nodes) == 1+workers && c.Nodes[0].Role == v1alpha4.ControlPlaneRole
	for _, n := range c.Nodes[min(1, len(c.Nodes)):] {
		ok = ok && n.Role == v1alpha4.WorkerRole
	}
	if !ok {
		errs = append(errs, fmt.Errorf("want one %s node followed by %d %s nodes (got %d nodes)", v1alpha4.ControlPlaneRole, workers, v1alpha4.WorkerRole, len(c.Nodes)))
	}
	for i, n := range c.Nodes {
		if !nodeImage.MatchString(n.Image) {
			errs = append(errs, fmt.Errorf("node %d: image %q is not kindest/node:v1.37.x@sha256:<digest> (pin the image kind's release notes list, digest included)", i, n.Image))
		}
	}
	for _, s := range []struct{ what, cidrs, local string }{
		{"pod subnet", c.Networking.PodSubnet, localPodCIDR},
		{"service subnet", c.Networking.ServiceSubnet, localSvcCIDR},
		{"service subnet", c.Networking.ServiceSubnet, localPodCIDR},
		{"pod subnet", c.Networking.PodSubnet, localSvcCIDR},
	} {
		if overlaps(s.cidrs, s.local) {
			errs = append(errs, fmt.Errorf("%s %s overlaps the local cluster's %s (hack/local-cluster.sh): both may run on one machine", s.what, s.cidrs, s.local))
		}
	}
	return errs
}

// overlaps reports whether any CIDR of the comma-separated list shares an
// address with cidr. Unparsable input was reported by validate.
func overlaps(list, cidr string) bool {
	_, b, err := net.ParseCIDR(cidr)
	if err != nil {
		return false
	}
	for _, s := range strings.Split(list, ",") {
		_, a, err := net.ParseCIDR(s)
		if err != nil {
			continue
		}
		if a.Contains(b.IP) || b.Contains(a.IP) {
			return true
		}
	}
	return false
}

// kindModuleVersion is the version of sigs.k8s.io/kind this binary is built with.
func kindModuleVersion() string {
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, m := range bi.Deps {
			if m.Path == "sigs.k8s.io/kind" {
				if m.Replace != nil {
					return m.Replace.Version
				}
				return m.Version
			}
		}
	}
	return "(unknown)"
}
