// SPDX-License-Identifier: Apache-2.0

package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	corev1ac "k8s.io/client-go/applyconfigurations/core/v1"
	"k8s.io/client-go/kubernetes"
)

// cacheModes are cmd/cachesync's programs, in the table's order.
var cacheModes = []struct{ mode, label string }{
	{"incluster", "library (controller.Manager informer)"},
	{"client-go", "client-go defaults (typed informer, QPS 5)"},
	{"controller-runtime", "controller-runtime cache (DefaultNamespaces)"},
}

// cacheStats are one program's runs for one number of ConfigMaps.
type cacheStats struct {
	wall, rss, heap []float64 // seconds, bytes, bytes
	read            int64     // bytes from the API server, one run through the proxy
}

// cacheSync fills the fake pod's namespace with N ConfigMaps for each N of
// -cache, runs cmd/cachesync in each mode -cache-runs times (exec to exit:
// the program exits once its cache has synced), and adds a row per program
// and the goals of the library against the two others.
func cacheSync(ctx context.Context, cs kubernetes.Interface, pod *fakePod, add func(what, value, target string, ok *bool)) error {
	bin, err := buildCmd("cachesync")
	if err != nil {
		return err
	}
	defer os.RemoveAll(filepath.Dir(bin))
	var counts []int
	for _, f := range strings.Split(*cacheNs, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 1 {
			return fmt.Errorf("-cache %q: want numbers of ConfigMaps, e.g. 1000,10000", *cacheNs)
		}
		counts = append(counts, n)
	}
	for _, n := range counts {
		if err := fillConfigMaps(ctx, cs, pod.ns, n); err != nil {
			return err
		}
		res := map[string]*cacheStats{}
		for _, m := range cacheModes {
			argv := []string{bin, "-mode=" + m.mode}
			rs, err := pod.measureRuns(argv, *cacheRuns)
			if err != nil {
				return fmt.Errorf("cachesync -mode=%s, %d ConfigMaps: %w", m.mode, n, err)
			}
			st := &cacheStats{}
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
				fmt.Sprintf("%s s exec to synced; peak RSS %s MiB; heap after GC %.1f MiB; %.1f MB read",
					spread(st.wall, 1, "%.2f"), spread(st.rss, 1<<20, "%.1f"), median(st.heap)/(1<<20), float64(st.read)/1e6), "", nil)
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

// fillConfigMaps makes the ConfigMaps bench-00000 ... up to n of them in ns
// with server-side apply (so that they carry managedFields, as real objects
// do), about 1 KiB of data each. Applying one that exists changes nothing.
func fillConfigMaps(ctx context.Context, cs kubernetes.Interface, ns string, n int) error {
	data := strings.Repeat("0123456789abcdef", 64) // 1 KiB
	names := make(chan string)
	var wg sync.WaitGroup
	var mu sync.Mutex
	var firstErr error
	for range 16 {
		wg.Go(func() {
			for name := range names {
				cm := corev1ac.ConfigMap(name, ns).WithLabels(map[string]string{"bench": "cachesync"}).WithData(map[string]string{"data": data})
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
