// SPDX-License-Identifier: Apache-2.0

package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"hash/crc32"
	mathrand "math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	corev1ac "k8s.io/client-go/applyconfigurations/core/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/incluster/incluster/cmd/example-controller/app"
)

// controllerBinaries adds the sizes of the example controller and of the
// same controller written with controller-runtime (cmd/crcontroller), both
// stripped. The example's image holds its binary and nothing else. The
// example carries more than crcontroller (the Bundle loop of --bundles,
// its dynamic client and Events, /metrics over HTTPS with each scrape's
// token reviewed): the ratio counts that against it. The last row is
// crcontroller with -tags securemetrics: /metrics served as the example
// and kubebuilder's scaffold serve it, the same controller feature for
// feature.
func controllerBinaries(add func(what, value, target string, ok *bool)) error {
	size := func(pkg, name string, flags ...string) (int64, error) {
		bin, err := buildPkg(pkg, name, flags...)
		if err != nil {
			return 0, err
		}
		defer os.RemoveAll(filepath.Dir(bin))
		st, err := os.Stat(bin)
		if err != nil {
			return 0, err
		}
		return st.Size(), nil
	}
	ex, err := size("github.com/incluster/incluster/cmd/example-controller", "example-controller")
	if err != nil {
		return err
	}
	noMetrics, err := size("github.com/incluster/incluster/cmd/example-controller", "example-controller-nometrics", "-tags", "nometrics")
	if err != nil {
		return err
	}
	cr, err := size("./cmd/crcontroller", "crcontroller")
	if err != nil {
		return err
	}
	crSecure, err := size("./cmd/crcontroller", "crcontroller-securemetrics", "-tags", "securemetrics")
	if err != nil {
		return err
	}
	add("binary: example controller (stripped; its image is this binary alone)", mb(ex), "", nil)
	add("binary: example controller without metrics (-tags nometrics)", fmt.Sprintf("%s (metrics cost %s)", mb(noMetrics), mb(ex-noMetrics)), "", nil)
	ratio := float64(ex) / float64(cr)
	ok := ratio <= 0.85
	add("binary: the same controller on controller-runtime (stripped)", fmt.Sprintf("%s (example %.2fx)", mb(cr), ratio), "example ≤ 0.85x", &ok)
	ratio = float64(ex) / float64(crSecure)
	okSecure := ratio <= 0.85
	add("binary: the same on controller-runtime, /metrics as kubebuilder scaffolds it (HTTPS, TokenReview and SubjectAccessReview: -tags securemetrics)",
		fmt.Sprintf("%s (example %.2fx)", mb(crSecure), ratio), "example ≤ 0.85x", &okSecure)
	return nil
}

// cacheModes are cmd/cachesync's programs, in the table's order.
var cacheModes = []struct{ mode, tag, label string }{
	{"incluster", "incluster", "library (controller.Manager informer)"},
	{"incluster+metrics", "inclustermetrics", "library with metrics (WithMetrics: Prometheus registry)"},
	{"client-go", "clientgo", "client-go defaults (typed informer, QPS 5)"},
	{"controller-runtime", "controllerruntime", "controller-runtime cache (DefaultNamespaces)"},
}

// cacheStats are one program's runs for one number of ConfigMaps.
type cacheStats struct {
	wall, rss, heap []float64 // seconds, bytes, bytes
	initRSS         float64   // peak RSS of the binary exiting at once (-init-only)
	read            int64     // bytes from the API server, one run through the proxy
}

// cacheSync fills the fake pod's namespace with N ConfigMaps for each N of
// -cache, runs each build of cmd/cachesync -cache-runs times (exec to exit:
// the program exits once its cache has synced), and adds a row per program
// and the goals of the library against the two others.
func cacheSync(ctx context.Context, cs kubernetes.Interface, pod *fakePod, add func(what, value, target string, ok *bool)) error {
	bins := map[string]string{}
	for _, m := range cacheModes {
		bin, err := buildPkg("./cmd/cachesync", "cachesync-"+m.mode, "-tags", m.tag)
		if err != nil {
			return err
		}
		defer os.RemoveAll(filepath.Dir(bin))
		bins[m.mode] = bin
	}
	var sizes []string
	for _, m := range cacheModes {
		if st, err := os.Stat(bins[m.mode]); err == nil {
			sizes = append(sizes, m.mode+" "+mb(st.Size()))
		}
	}
	add("binary: cmd/cachesync builds (stripped)", strings.Join(sizes, ", "), "", nil)
	numbers, err := counts("-cache", *cacheNs)
	if err != nil {
		return err
	}
	for _, n := range numbers {
		if err := fillConfigMaps(ctx, cs, pod.ns, n, map[string]string{"bench": "cachesync"}); err != nil {
			return err
		}
		res := map[string]*cacheStats{}
		for _, m := range cacheModes {
			argv := []string{bins[m.mode]}
			rs, err := pod.measureRuns(argv, *cacheRuns)
			if err != nil {
				return fmt.Errorf("cachesync -mode=%s, %d ConfigMaps: %w", m.mode, n, err)
			}
			st := &cacheStats{}
			initRuns, err := pod.measureRuns([]string{bins[m.mode], "-init-only"}, 3)
			if err != nil {
				return fmt.Errorf("cachesync -init-only (%s): %w", m.mode, err)
			}
			for _, r := range initRuns {
				st.initRSS = max(st.initRSS, float64(r.rss))
			}
			for _, r := range rs {
				var out struct {
					Objects     int     `json:"objects"`
					HeapAfterGC float64 `json:"heapAfterGC"`
				}
				line := bytes.TrimSpace(r.stdout)
				if i := bytes.LastIndexByte(line, '\n'); i >= 0 {
					line = line[i+1:]
				}
				if err := json.Unmarshal(line, &out); err != nil {
					return fmt.Errorf("cachesync -mode=%s: output %q: %w", m.mode, r.stdout, err)
				}
				if out.Objects < n {
					return fmt.Errorf("cachesync -mode=%s: the cache holds %d ConfigMaps, want at least %d", m.mode, out.Objects, n)
				}
				st.wall = append(st.wall, r.wall.Seconds())
				st.rss = append(st.rss, float64(r.rss))
				st.heap = append(st.heap, out.HeapAfterGC)
			}
			if _, st.read, err = pod.throughProxy(argv); err != nil {
				return fmt.Errorf("cachesync -mode=%s through the proxy: %w", m.mode, err)
			}
			res[m.mode] = st
			add(fmt.Sprintf("cache sync, %d ConfigMaps: %s", n, m.label),
				fmt.Sprintf("%s s exec to synced; peak RSS %s MiB (%.1f MiB of it at start: binary and package init); heap after GC %.1f MiB; %.1f MB read",
					spread(st.wall, 1, "%.2f"), spread(st.rss, 1<<20, "%.1f"), st.initRSS/(1<<20), median(st.heap)/(1<<20), float64(st.read)/1e6), "", nil)
		}
		lib, cg, cr := res["incluster"], res["client-go"], res["controller-runtime"]
		rssCG, rssCR := median(lib.rss)/median(cg.rss), median(lib.rss)/median(cr.rss)
		add(fmt.Sprintf("cache sync, %d ConfigMaps: library peak RSS vs client-go, controller-runtime", n),
			fmt.Sprintf("%.2fx, %.2fx", rssCG, rssCR), "≤ 0.6x, ≤ 0.8x", new(rssCG <= 0.6 && rssCR <= 0.8))
		tCG, tCR := median(lib.wall)/median(cg.wall), median(lib.wall)/median(cr.wall)
		add(fmt.Sprintf("cache sync, %d ConfigMaps: library time to synced vs client-go, controller-runtime", n),
			fmt.Sprintf("%.2fx, %.2fx", tCG, tCR), "≤ 0.8x, ≤ 0.8x", new(tCG <= 0.8 && tCR <= 0.8))
	}
	return nil
}

// fillConfigMaps makes the ConfigMaps bench-00000 ... up to n of them in ns,
// with labels, with server-side apply (so that they carry managedFields, as
// real objects do), 1 KiB of random base64 data each: the API server gzips
// large answers, and repeated bytes would shrink to nothing. Applying one
// that exists with the same data changes nothing; its data is derived from
// its name.
func fillConfigMaps(ctx context.Context, cs kubernetes.Interface, ns string, n int, labels map[string]string) error {
	return applyConfigMaps(ctx, cs, ns, n, labels, false)
}

// fillHashedConfigMaps is fillConfigMaps with each ConfigMap's hash
// annotation (app.ConfigHash of its data) already right, so that a
// controller that starts finds nothing to write.
func fillHashedConfigMaps(ctx context.Context, cs kubernetes.Interface, ns string, n int, labels map[string]string) error {
	return applyConfigMaps(ctx, cs, ns, n, labels, true)
}

func applyConfigMaps(ctx context.Context, cs kubernetes.Interface, ns string, n int, labels map[string]string, hashed bool) error {
	data := func(name string) string {
		r := mathrand.New(mathrand.NewPCG(uint64(len(name)), uint64(crc32.ChecksumIEEE([]byte(name)))))
		b := make([]byte, 768)
		for i := range b {
			b[i] = byte(r.Uint32())
		}
		return base64.StdEncoding.EncodeToString(b) // 1024 characters
	}
	names := make(chan string)
	var wg sync.WaitGroup
	var mu sync.Mutex
	var firstErr error
	for range 16 {
		wg.Go(func() {
			for name := range names {
				d := map[string]string{"data": data(name)}
				cm := corev1ac.ConfigMap(name, ns).WithLabels(labels).WithData(d)
				if hashed {
					cm.WithAnnotations(map[string]string{app.HashAnnotation: app.ConfigHash(&corev1.ConfigMap{Data: d})})
				}
				if _, err := cs.CoreV1().ConfigMaps(ns).Apply(ctx, cm, metav1.ApplyOptions{FieldManager: "incluster-bench", Force: true}); err != nil {
					mu.Lock()
					if firstErr == nil {
						firstErr = fmt.Errorf("apply ConfigMap %s/%s: %w", ns, name, err)
					}
					mu.Unlock()
				}
			}
		})
	}
	for i := range n {
		names <- fmt.Sprintf("bench-%05d", i)
	}
	close(names)
	wg.Wait()
	return firstErr
}

func median(v []float64) float64 {
	s := slices.Clone(v)
	slices.Sort(s)
	return s[len(s)/2]
}

// spread formats the median of v/unit with its min and max: "M (min–max)".
func spread(v []float64, unit float64, format string) string {
	f := func(x float64) string { return fmt.Sprintf(format, x/unit) }
	return f(median(v)) + " (" + f(slices.Min(v)) + "–" + f(slices.Max(v)) + ")"
}
