// SPDX-License-Identifier: Apache-2.0

package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/rand"
	"k8s.io/client-go/kubernetes"

	"github.com/incluster/incluster/cmd/example-controller/app"
)

// peakRuns is how many times each controller runs per number of ConfigMaps.
const peakRuns = 3

// peakProg is one controller of the peak-RSS measurement.
type peakProg struct {
	label string
	sa    string // its ServiceAccount in the namespace
	argv  []string
}

// peakRSS measures the three controllers of the memory-limit part (the
// example controller with deploy/controller's arguments, cmd/crcontroller,
// cmd/cgcontroller), each with its defaults and no memory limit, run as if
// in a pod on this host (hack/as-pod.sh) under GNU time: for each n, one
// namespace with n labelled ConfigMaps of 1 KiB, already hashed, and the
// three stacks' RBAC; each run execs a controller, changes the sentinel
// ConfigMap, waits until the controller hashed it (its caches synced, its
// Lease held, its work running), lets it run 5 s more and stops it with
// SIGTERM; the peak RSS is GNU time's. peakRuns runs each, interleaved;
// the medians side by side, and the example's against each (goal: ≤ 0.8x).
func peakRSS(ctx context.Context, cs kubernetes.Interface, pod *fakePod, counts []int, add func(what, value, target string, ok *bool)) error {
	var progs []peakProg
	for _, b := range []struct{ pkg, name, sa, label string }{
		{"github.com/incluster/incluster/cmd/example-controller", "example-controller", "incluster-example-controller", "example controller (deploy/controller's arguments)"},
		{"./cmd/crcontroller", "crcontroller", "crcontroller", "controller-runtime (cmd/crcontroller)"},
		{"./cmd/cgcontroller", "cgcontroller", "cgcontroller", "client-go (cmd/cgcontroller)"},
	} {
		bin, err := buildPkg(b.pkg, b.name)
		if err != nil {
			return err
		}
		defer os.RemoveAll(filepath.Dir(bin))
		argv := []string{bin}
		switch b.name {
		case "example-controller":
			argv = append(argv, "--lease-name="+app.DefaultLease, "--probe-address=127.0.0.1:0", "--shutdown-timeout=20s", "--retry-period=1s", "--metrics-bind-address=127.0.0.1:0")
		case "crcontroller":
			argv = append(argv, "-probe-address=127.0.0.1:0", "-metrics-address=127.0.0.1:0")
		}
		progs = append(progs, peakProg{label: b.label, sa: b.sa, argv: argv})
	}
	defer func() { // applyExampleRBAC's bindings
		_ = cs.RbacV1().ClusterRoleBindings().DeleteCollection(context.Background(), metav1.DeleteOptions{},
			metav1.ListOptions{LabelSelector: benchLabel + "=startwork"})
	}()
	for _, n := range counts {
		ns := "bench-peak-" + rand.String(5)
		err := func() error {
			defer deleteNamespace(cs, ns)
			if err := applyExampleRBAC(ctx, cs, ns); err != nil {
				return err
			}
			for _, name := range []string{"crcontroller", "cgcontroller"} {
				if err := kubectlApply(ctx, benchRBAC(ns, name)); err != nil {
					return err
				}
			}
			t0 := time.Now()
			if err := fillHashedConfigMaps(ctx, cs, ns, n, map[string]string{app.SelectLabel: "true"}); err != nil {
				return err
			}
			fmt.Fprintf(os.Stderr, "bench: peak RSS: %d ConfigMaps made in %s in %.0f s\n", n, ns, time.Since(t0).Seconds())
			rss := make([][]float64, len(progs))
			for i := range peakRuns {
				for j, p := range progs {
					v, took, err := p.run(ctx, cs, pod, ns)
					if err != nil {
						return fmt.Errorf("peak RSS, %d ConfigMaps, %s: %w", n, p.label, err)
					}
					rss[j] = append(rss[j], float64(v))
					fmt.Fprintf(os.Stderr, "bench: peak RSS %d, %d ConfigMaps, %s: %.1f MiB (sentinel hashed %.1f s after exec)\n", i+1, n, p.label, float64(v)/(1<<20), took.Seconds())
				}
			}
			what := fmt.Sprintf("peak RSS without a limit, %d ConfigMaps, exec to work (%d runs): ", n, peakRuns)
			for j, p := range progs {
				add(what+p.label, spread(rss[j], 1<<20, "%.1f")+" MiB", "", nil)
			}
			ex := median(rss[0])
			r1, r2 := ex/median(rss[1]), ex/median(rss[2])
			add(fmt.Sprintf("peak RSS without a limit, %d ConfigMaps: example vs controller-runtime, client-go", n),
				fmt.Sprintf("%.2fx, %.2fx", r1, r2), "≤ 0.8x, ≤ 0.8x", new(r1 <= 0.8 && r2 <= 0.8))
			return nil
		}()
		if err != nil {
			return err
		}
	}
	return nil
}

// run execs p as if in a pod of namespace ns under GNU time, changes the
// sentinel, waits until p hashed it, lets it run 5 s more, stops it with
// SIGTERM and returns its peak RSS in bytes and how long the hash took
// from the exec.
func (p peakProg) run(ctx context.Context, cs kubernetes.Interface, pod *fakePod, ns string) (int64, time.Duration, error) {
	tr, err := cs.CoreV1().ServiceAccounts(ns).CreateToken(ctx, p.sa, &authenticationv1.TokenRequest{
		Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: new(int64(3600))}}, metav1.CreateOptions{})
	if err != nil {
		return 0, 0, err
	}
	fp := &fakePod{ns: ns, token: tr.Status.Token, ca: pod.ca, host: pod.host, port: pod.port}
	err = fp.writeDir()
	if fp.dir != "" {
		defer os.RemoveAll(fp.dir)
	}
	if err != nil {
		return 0, 0, err
	}
	cmd := fp.command(fp.host, fp.port, append([]string{"/usr/bin/time", "-f", "incluster-bench-maxrss=%M"}, p.argv...))
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	start := time.Now()
	if err := cmd.Start(); err != nil {
		return 0, 0, err
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	stop := func() { stopProcess(cmd, exited) }
	_, want, err := changeSentinel(ctx, cs, ns)
	if err != nil {
		stop()
		return 0, 0, err
	}
	deadline := time.Now().Add(3 * time.Minute)
	for {
		cm, err := cs.CoreV1().ConfigMaps(ns).Get(ctx, memSentinel, metav1.GetOptions{})
		if err == nil && cm.Annotations[app.HashAnnotation] == want {
			break
		}
		select {
		case err := <-exited:
			return 0, 0, fmt.Errorf("exited (%v) before hashing the sentinel; output:\n%s", err, lastLinesOf(out.String(), 20))
		default:
		}
		if time.Now().After(deadline) {
			stop()
			return 0, 0, fmt.Errorf("the sentinel not hashed 3 minutes after the exec; output:\n%s", lastLinesOf(out.String(), 20))
		}
		time.Sleep(100 * time.Millisecond)
	}
	took := time.Since(start)
	time.Sleep(5 * time.Second)
	stop()
	m := rssLine.FindSubmatch(out.Bytes())
	if m == nil {
		return 0, 0, fmt.Errorf("no peak RSS from GNU time; output:\n%s", lastLinesOf(out.String(), 20))
	}
	kib, _ := strconv.ParseInt(string(m[1]), 10, 64)
	return kib << 10, took, nil
}
