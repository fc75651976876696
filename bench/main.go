// SPDX-License-Identifier: Apache-2.0

// Command bench is make bench: it measures the demo and the library against
// curl, kubectl, a minimal client-go program and client-go's defaults, and
// at controller scale against controller-runtime and client-go
// (cachesync.go, startwork.go, handoff.go, memlimit.go), side by side in one
// run against a real cluster, and prints a Markdown table (also written to
// -out). Timings are reported, never asserted: a missed target is marked
// MISS in the table.
//
// Every process runs as if in a pod: in a private mount namespace where a
// folder with a real ServiceAccount token, the cluster's CA and the
// namespace is mounted at /var/run/secrets/kubernetes.io/serviceaccount, with
// KUBERNETES_SERVICE_HOST/PORT pointing at the API server. The same wrapper
// runs /bin/true, so its own cost is known.
package main

import (
	"archive/tar"
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/rand"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/incluster/incluster/pkg/clients"
	"github.com/incluster/incluster/pkg/incluster"
)

var (
	demoBin    = flag.String("demo", "", "the demo binary, stripped as in the image (required)")
	imageTar   = flag.String("image", "", "the demo image tarball, for its size")
	kubectlBin = flag.String("kubectl", "kubectl", "kubectl binary")
	runs       = flag.Int("runs", 20, "runs per command for the latency medians")
	loadN      = flag.Int("load", 1000, "GETs per load test")
	out        = flag.String("out", "", "also write the table to this file")
	cacheNs    = flag.String("cache", "1000,10000", "numbers of ConfigMaps for the cache-sync comparison (\"\" skips it)")
	cacheRuns  = flag.Int("cache-runs", 5, "runs per program and number of ConfigMaps")
	memNs      = flag.String("memlimit", "", "numbers of ConfigMaps for the smallest memory limit of each controller as a pod, e.g. \"10000,50000\" (\"\" skips it; slow: about 30 pod trials, some 15 minutes, per number)")
	atLimitMiB = flag.Int("atlimit", 0, "with -only memlimit: no bisection; only the example's check at this limit in MiB (2 replicas, every ConfigMap to hash, a handoff), for each -memlimit number")
	peakNs     = flag.String("peakrss", "", "numbers of ConfigMaps for the three controllers' peak RSS without a limit, as processes (\"\" skips it; -only peakrss defaults to 10000,50000)")
	shardsN    = flag.Int("shards", 0, "number of ConfigMaps for the sharded controller's peak RSS per replica with 1, 2 and 4 replicas (0 skips it; -only shards defaults to 50000)")
	only       = flag.String("only", "", "run only this part: \"controller\" (binaries, cache sync, start to work, handoff, and the memory limit if -memlimit is set), \"binaries\" (the controllers' binary sizes), \"startwork\" (start to work), \"memlimit\" (the memory limit; -memlimit defaults to 10000,50000) or \"shards\" (the sharded controller; -shards defaults to 50000)")
)

func main() {
	flag.Parse()
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

type row struct{ what, value, target, verdict string }

func run() error {
	if *demoBin == "" {
		return fmt.Errorf("-demo is required")
	}
	kc := os.Getenv("KUBECONFIG")
	if kc == "" {
		return fmt.Errorf("KUBECONFIG is not set")
	}
	admin, err := clientcmd.BuildConfigFromFlags("", kc)
	if err != nil {
		return err
	}
	admin.QPS = -1
	cs := kubernetes.NewForConfigOrDie(admin)
	ctx := context.Background()

	pod, cleanup, err := setup(ctx, cs, admin)
	if err != nil {
		return err
	}
	defer cleanup()

	minimal, err := buildCmd("minimal")
	if err != nil {
		return err
	}
	defer os.RemoveAll(filepath.Dir(minimal))

	var rows []row
	add := func(what, value, target string, ok *bool) {
		v := ""
		if ok != nil {
			v = map[bool]string{true: "ok", false: "MISS"}[*ok]
		}
		rows = append(rows, row{what, value, target, v})
		fmt.Fprintf(os.Stderr, "bench: %s: %s\n", what, value)
	}
	ptr := func(b bool) *bool { return &b }

	switch *only {
	case "":
		if err := clientRows(ctx, pod, minimal, add, ptr); err != nil {
			return err
		}
	case "controller", "startwork", "binaries":
	case "memlimit":
		if *memNs == "" {
			*memNs = "10000,50000"
		}
	case "peakrss":
		if *peakNs == "" {
			*peakNs = "10000,50000"
		}
	case "shards":
		if *shardsN == 0 {
			*shardsN = 50000
		}
	default:
		return fmt.Errorf("-only %q: want \"controller\", \"binaries\", \"startwork\", \"memlimit\", \"peakrss\" or \"shards\"", *only)
	}
	memCounts, err := counts("-memlimit", *memNs)
	if err != nil {
		return err
	}
	peakCounts, err := counts("-peakrss", *peakNs)
	if err != nil {
		return err
	}

	// 6. Controller scale: the binaries, filling a cache, the start to the
	// first write, the handoff, the smallest memory limit.
	controllerParts := *only == "" || *only == "controller"
	if controllerParts || *only == "binaries" {
		if err := controllerBinaries(add); err != nil {
			return err
		}
	}
	if controllerParts {
		if *cacheNs != "" {
			if err := cacheSync(ctx, cs, pod, add); err != nil {
				return err
			}
		}
	}
	if controllerParts || *only == "startwork" {
		if err := startWork(ctx, cs, pod, add); err != nil {
			return err
		}
	}
	if controllerParts {
		if err := handoffs(ctx, cs, add); err != nil {
			return err
		}
	}
	if len(memCounts) > 0 && (controllerParts || *only == "memlimit") {
		if err := memLimits(ctx, cs, memCounts, add); err != nil {
			return err
		}
	}
	if len(peakCounts) > 0 && (controllerParts || *only == "peakrss" || *only == "memlimit") {
		if err := peakRSS(ctx, cs, pod, peakCounts, add); err != nil {
			return err
		}
	}
	if *shardsN > 0 && (controllerParts || *only == "shards") {
		if err := shardsBench(ctx, cs, pod, *shardsN, add); err != nil {
			return err
		}
	}

	var b strings.Builder
	fmt.Fprintf(&b, "# make bench\n\n%s, Kubernetes %s, %d runs per latency, %d GETs per load test.\n\n", time.Now().UTC().Format("2006-01-02 15:04 MST"), pod.version, *runs, *loadN)
	b.WriteString("| what | measured | target | |\n|---|---|---|---|\n")
	for _, r := range rows {
		fmt.Fprintf(&b, "| %s | %s | %s | %s |\n", r.what, r.value, r.target, r.verdict)
	}
	fmt.Print(b.String())
	if *out != "" && *only == "" { // a partial run does not replace the whole table
		return os.WriteFile(*out, []byte(b.String()), 0o644)
	}
	return nil
}

// counts parses the value of a flag that lists numbers of ConfigMaps
// ("1000,10000"); "" is none.
func counts(name, value string) ([]int, error) {
	if value == "" {
		return nil, nil
	}
	var numbers []int
	for _, f := range strings.Split(value, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 1 {
			return nil, fmt.Errorf("%s %q: want numbers of ConfigMaps, e.g. 1000,10000", name, value)
		}
		numbers = append(numbers, n)
	}
	return numbers, nil
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
func mib(b int64) string         { return fmt.Sprintf("%.1f MiB", float64(b)/(1<<20)) }
func mb(b int64) string          { return fmt.Sprintf("%.2f MB", float64(b)/1e6) }

// saPath is where the wrapper mounts the service-account folder.
const saPath = "/var/run/secrets/kubernetes.io/serviceaccount"

// fakePod is what a pod would get: a ServiceAccount's token, the CA and
// namespace in a folder, and the API server's address.
type fakePod struct {
	dir, ns, token, ca, host, port, version string
}

func setup(ctx context.Context, cs kubernetes.Interface, admin *rest.Config) (*fakePod, func(), error) {
	p := &fakePod{ns: "bench-" + rand.String(5)}
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: p.ns}}
	if _, err := cs.CoreV1().Namespaces().Create(ctx, ns, metav1.CreateOptions{}); err != nil {
		return nil, nil, err
	}
	cleanup := func() {
		_ = cs.CoreV1().Namespaces().Delete(context.Background(), p.ns, metav1.DeleteOptions{})
		if p.dir != "" {
			_ = os.RemoveAll(p.dir)
		}
	}
	fail := func(err error) (*fakePod, func(), error) { cleanup(); return nil, nil, err }
	sa := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "incluster-demo"}}
	if _, err := cs.CoreV1().ServiceAccounts(p.ns).Create(ctx, sa, metav1.CreateOptions{}); err != nil {
		return fail(err)
	}
	role := &rbacv1.Role{ObjectMeta: metav1.ObjectMeta{Name: "bench"}, Rules: []rbacv1.PolicyRule{
		{APIGroups: []string{""}, Resources: []string{"pods"}, Verbs: []string{"get", "list"}},
		// cmd/cachesync: informers on configmaps; the library's preflight
		// also checks what its leader election would need.
		{APIGroups: []string{""}, Resources: []string{"configmaps"}, Verbs: []string{"get", "list", "watch"}},
		{APIGroups: []string{"coordination.k8s.io"}, Resources: []string{"leases"}, Verbs: []string{"get", "list", "watch", "create", "update"}}}}
	binding := &rbacv1.RoleBinding{ObjectMeta: metav1.ObjectMeta{Name: "bench"},
		RoleRef:  rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "Role", Name: "bench"},
		Subjects: []rbacv1.Subject{{Kind: "ServiceAccount", Name: sa.Name}}}
	cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "bench"}, Data: map[string]string{"key": "value"}}
	if _, err := cs.RbacV1().Roles(p.ns).Create(ctx, role, metav1.CreateOptions{}); err != nil {
		return fail(err)
	}
	if _, err := cs.RbacV1().RoleBindings(p.ns).Create(ctx, binding, metav1.CreateOptions{}); err != nil {
		return fail(err)
	}
	if _, err := cs.CoreV1().ConfigMaps(p.ns).Create(ctx, cm, metav1.CreateOptions{}); err != nil {
		return fail(err)
	}
	tr, err := cs.CoreV1().ServiceAccounts(p.ns).CreateToken(ctx, sa.Name, &authenticationv1.TokenRequest{
		Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: new(int64(3600))}}, metav1.CreateOptions{})
	if err != nil {
		return fail(err)
	}
	p.token = tr.Status.Token
	for i := 0; ; i++ {
		c, err := cs.CoreV1().ConfigMaps(p.ns).Get(ctx, "kube-root-ca.crt", metav1.GetOptions{})
		if err == nil {
			p.ca = c.Data["ca.crt"]
			break
		}
		if i == 100 {
			return fail(fmt.Errorf("no kube-root-ca.crt in %s: %w", p.ns, err))
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err := p.writeDir(); err != nil {
		return fail(err)
	}
	u, err := url.Parse(admin.Host)
	if err != nil {
		return fail(err)
	}
	if p.host, p.port, err = net.SplitHostPort(u.Host); err != nil {
		return fail(err)
	}
	v, err := cs.Discovery().ServerVersion()
	if err != nil {
		return fail(err)
	}
	p.version = v.GitVersion
	return p, cleanup, nil
}

// writeDir makes p.dir, the pod's service-account folder: token, ca.crt,
// namespace, and auth-header (for curl -H @file: no token in argv).
func (p *fakePod) writeDir() error {
	dir, err := os.MkdirTemp("", "incluster-bench")
	if err != nil {
		return err
	}
	p.dir = dir
	for name, data := range map[string]string{"token": p.token, "ca.crt": p.ca, "namespace": p.ns,
		"auth-header": "Authorization: Bearer " + p.token + "\n"} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(data), 0o600); err != nil {
			return err
		}
	}
	return nil
}

// asPod is hack/as-pod.sh; bench runs in bench/.
var asPod, _ = filepath.Abs(filepath.Join("..", "hack", "as-pod.sh"))

// command runs argv as if in the pod (hack/as-pod.sh), with the API server
// at host:port.
func (p *fakePod) command(host, port string, argv []string) *exec.Cmd {
	cmd := exec.Command(asPod, append([]string{p.dir}, argv...)...)
	cmd.Env = []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin", "HOME=/tmp",
		"KUBERNETES_SERVICE_HOST=" + host, "KUBERNETES_SERVICE_PORT=" + port}
	return cmd
}

// rssLine is what GNU time prints for the peak RSS of the command it ran.
var rssLine = regexp.MustCompile(`incluster-bench-maxrss=([0-9]+)`)

// measure runs argv runs times (after two warm-up runs) and returns the
// median wall time and the largest peak RSS.
func (p *fakePod) measure(argv []string, runs int) (time.Duration, int64, error) {
	rs, err := p.measureRuns(argv, runs)
	if err != nil {
		return 0, 0, err
	}
	times := make([]time.Duration, len(rs))
	var maxRSS int64
	for i, r := range rs {
		times[i] = r.wall
		maxRSS = max(maxRSS, r.rss)
	}
	slices.Sort(times)
	return times[len(times)/2], maxRSS, nil
}

// runResult is one run of measureRuns.
type runResult struct {
	wall   time.Duration
	rss    int64
	stdout []byte
}

// measureRuns runs argv runs times after two warm-up runs and returns each
// run's wall time, peak RSS and output. The RSS comes from GNU time, which
// forks the command from its own small process: the rusage of a process
// that Go starts directly also counts the memory of the Go parent it was
// forked from (Linux keeps the pre-exec high-water mark).
func (p *fakePod) measureRuns(argv []string, runs int) ([]runResult, error) {
	var rs []runResult
	argv = append([]string{"/usr/bin/time", "-f", "incluster-bench-maxrss=%M"}, argv...)
	for i := -2; i < runs; i++ {
		cmd := p.command(p.host, p.port, argv)
		var stdout, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		start := time.Now()
		if err := cmd.Run(); err != nil {
			return nil, fmt.Errorf("%v: %s", err, strings.TrimSpace(stderr.String()))
		}
		d := time.Since(start)
		if i < 0 {
			continue
		}
		m := rssLine.FindStringSubmatch(stderr.String())
		if m == nil {
			return nil, fmt.Errorf("no peak RSS from /usr/bin/time: %s", stderr.String())
		}
		kb, _ := strconv.ParseInt(m[1], 10, 64)
		rs = append(rs, runResult{wall: d, rss: kb * 1024, stdout: stdout.Bytes()})
	}
	return rs, nil
}

// throughProxy runs argv once with the API server behind a TCP proxy on
// 127.0.0.1 and returns how many connections it opened and how many bytes
// (TLS included) it read from the server.
func (p *fakePod) throughProxy(argv []string) (conns int, read int64, err error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, 0, err
	}
	defer l.Close()
	var n atomic.Int32
	var bytesIn atomic.Int64
	var wg sync.WaitGroup
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			n.Add(1)
			wg.Go(func() {
				defer c.Close()
				up, err := net.Dial("tcp", net.JoinHostPort(p.host, p.port))
				if err != nil {
					return
				}
				defer up.Close()
				go func() { _, _ = io.Copy(up, c); _ = up.(*net.TCPConn).CloseWrite() }()
				b, _ := io.Copy(c, up)
				bytesIn.Add(b)
			})
		}
	}()
	_, port, _ := net.SplitHostPort(l.Addr().String())
	cmd := p.command("127.0.0.1", port, argv)
	if outb, err := cmd.CombinedOutput(); err != nil {
		return 0, 0, fmt.Errorf("%v: %s", err, outb)
	}
	l.Close()
	wg.Wait()
	return int(n.Load()), bytesIn.Load(), nil
}

// load times *loadN GETs of a ConfigMap, sequential and from 16 goroutines,
// with the library's client, client-go's defaults and raw net/http.
func (p *fakePod) load(ctx context.Context) (map[string]map[string]time.Duration, error) {
	kubeconfig := filepath.Join(p.dir, "kubeconfig")
	kc := fmt.Sprintf("apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster: {server: %q, certificate-authority: %q}\nusers:\n- name: u\n  user: {tokenFile: %q}\ncontexts:\n- name: x\n  context: {cluster: c, user: u, namespace: %s}\ncurrent-context: x\n",
		"https://"+net.JoinHostPort(p.host, p.port), filepath.Join(p.dir, "ca.crt"), filepath.Join(p.dir, "token"), p.ns)
	if err := os.WriteFile(kubeconfig, []byte(kc), 0o600); err != nil {
		return nil, err
	}
	libc, err := incluster.New(incluster.WithKubeconfig(kubeconfig))
	if err != nil {
		return nil, err
	}
	lib, err := clients.Kubernetes(libc)
	if err != nil {
		return nil, err
	}
	cfg, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
	if err != nil {
		return nil, err
	}
	def, err := kubernetes.NewForConfig(cfg) // QPS 0 and Burst 0: client-go's 5 and 10
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM([]byte(p.ca))
	raw := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}, ForceAttemptHTTP2: true, MaxConnsPerHost: 1}}
	cmURL := "https://" + net.JoinHostPort(p.host, p.port) + "/api/v1/namespaces/" + p.ns + "/configmaps/bench"

	getters := map[string]func() error{
		"library": func() error {
			_, err := lib.CoreV1().ConfigMaps(p.ns).Get(ctx, "bench", metav1.GetOptions{})
			return err
		},
		"client-go defaults": func() error {
			_, err := def.CoreV1().ConfigMaps(p.ns).Get(ctx, "bench", metav1.GetOptions{})
			return err
		},
		"raw net/http": func() error {
			req, _ := http.NewRequestWithContext(ctx, http.MethodGet, cmURL, nil)
			req.Header.Set("Authorization", "Bearer "+p.token)
			req.Header.Set("Accept", "application/json")
			resp, err := raw.Do(req)
			if err != nil {
				return err
			}
			defer resp.Body.Close()
			var cm corev1.ConfigMap
			if resp.StatusCode != 200 {
				return fmt.Errorf("GET %s: %s", cmURL, resp.Status)
			}
			return json.NewDecoder(resp.Body).Decode(&cm)
		},
	}
	res := map[string]map[string]time.Duration{}
	for _, mode := range []struct {
		name    string
		workers int
	}{{"sequential", 1}, {"16 goroutines", 16}} {
		res[mode.name] = map[string]time.Duration{}
		for _, name := range []string{"raw net/http", "library", "client-go defaults"} {
			get := getters[name]
			if err := get(); err != nil { // warm: connection and caches
				return nil, fmt.Errorf("%s: %w", name, err)
			}
			var next atomic.Int64
			var firstErr error
			var once sync.Once
			var wg sync.WaitGroup
			start := time.Now()
			for range mode.workers {
				wg.Go(func() {
					for next.Add(1) <= int64(*loadN) {
						if err := get(); err != nil {
							once.Do(func() { firstErr = err })
							return
						}
					}
				})
			}
			wg.Wait()
			if firstErr != nil {
				return nil, fmt.Errorf("%s: %w", name, firstErr)
			}
			res[mode.name][name] = time.Since(start)
			fmt.Fprintf(os.Stderr, "bench: %d GETs %s, %s: %s\n", *loadN, mode.name, name, res[mode.name][name])
		}
	}
	return res, nil
}

// layerBytes is the uncompressed size of the layers in a docker-archive tarball.
func layerBytes(path string) (int64, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	var total int64
	tr := tar.NewReader(f)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return total, nil
		}
		if err != nil {
			return 0, err
		}
		if !strings.HasSuffix(h.Name, ".tar.gz") {
			continue
		}
		zr, err := gzip.NewReader(tr)
		if err != nil {
			return 0, fmt.Errorf("%s: %w", h.Name, err)
		}
		n, err := io.Copy(io.Discard, zr)
		if err != nil {
			return 0, err
		}
		total += n
	}
}

var initLine = regexp.MustCompile(`^init \S+ @[0-9.]+ ms, ([0-9.]+) ms clock`)

// initCost sums the clock time of every package init of the binary.
func initCost(bin string) (float64, error) {
	cmd := exec.Command(bin, "--help")
	cmd.Env = append(os.Environ(), "GODEBUG=inittrace=1")
	var stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = io.Discard, &stderr
	if err := cmd.Run(); err != nil {
		return 0, err
	}
	var total float64
	sc := bufio.NewScanner(&stderr)
	for sc.Scan() {
		if m := initLine.FindStringSubmatch(sc.Text()); m != nil {
			v, _ := strconv.ParseFloat(m[1], 64)
			total += v
		}
	}
	return total, nil
}

// buildCmd builds bench/cmd/NAME stripped, as the demo is, into a new
// temporary folder.
func buildCmd(name string) (string, error) { return buildPkg("./cmd/"+name, name) }

// buildPkg builds the command pkg stripped, as name in a new temporary
// folder, with more go build flags if given.
func buildPkg(pkg, name string, flags ...string) (string, error) {
	dir, err := os.MkdirTemp("", "incluster-bench-"+name)
	if err != nil {
		return "", err
	}
	bin := filepath.Join(dir, name)
	cmd := exec.Command("go", append(append([]string{"build", "-trimpath", "-ldflags=-s -w", "-o", bin}, flags...), pkg)...)
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if b, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build %s: %v\n%s", pkg, err, b)
	}
	return bin, nil
}

// clientRows measures the demo and the library as a client: latency,
// connections, memory and size, load, package init.
func clientRows(ctx context.Context, pod *fakePod, minimal string, add func(what, value, target string, ok *bool), ptr func(bool) *bool) error {
	// 1. Latency, whole process, medians.
	apiURL := "https://" + net.JoinHostPort(pod.host, pod.port) + "/api"
	cmds := []struct {
		name string
		argv []string
	}{
		{"wrapper alone (/bin/true)", []string{"/bin/true"}},
		{"curl GET /api (docs page)", []string{"curl", "-sS", "--cacert", filepath.Join(saPath, "ca.crt"), "-H", "@" + filepath.Join(saPath, "auth-header"), apiURL}},
		{"minimal client-go GET /api", []string{minimal}},
		{"demo --api-versions-only", []string{*demoBin, "--api-versions-only", "-o", "json"}},
		{"demo -o json (full report)", []string{*demoBin, "-o", "json"}},
		{"kubectl get --raw /api", []string{*kubectlBin, "get", "--raw", "/api"}},
	}
	med := map[string]time.Duration{}
	rss := map[string]int64{}
	for _, c := range cmds {
		d, r, err := pod.measure(c.argv, *runs)
		if err != nil {
			return fmt.Errorf("%s: %w", c.name, err)
		}
		med[c.name], rss[c.name] = d, r
	}
	curl := med[cmds[1].name]
	base := med[cmds[0].name]
	for _, c := range cmds {
		ratio := float64(med[c.name]) / float64(curl)
		net := float64(med[c.name]-base) / float64(curl-base)
		value := fmt.Sprintf("%.1f ms (%.2fx curl; %.2fx without the wrapper's %.1f ms)", ms(med[c.name]), ratio, net, ms(base))
		switch c.name {
		case "demo -o json (full report)":
			add("latency: "+c.name, value, "≤ 1.3x curl", ptr(net <= 1.3))
		case "demo --api-versions-only":
			add("latency: "+c.name, value, "≤ 1.1x curl", ptr(net <= 1.1))
		default:
			add("latency: "+c.name, value, "", nil)
		}
	}

	// 2. Connections per report, at the TCP level through a counting proxy.
	conns, _, err := pod.throughProxy([]string{*demoBin, "-o", "json"})
	if err != nil {
		return err
	}
	add("TLS connections per full report (real server)", strconv.Itoa(conns), "1", ptr(conns == 1))
	add("requests per report", "4 (full), 1 (--api-versions-only)", "no discovery", nil)

	// 3. Memory and size.
	demoRSS := rss["demo -o json (full report)"]
	add("peak RSS: demo -o json", mib(demoRSS), "≤ 24 MiB", ptr(demoRSS <= 24<<20))
	add("peak RSS: minimal client-go", mib(rss["minimal client-go GET /api"]), "", nil)
	add("peak RSS: curl", mib(rss["curl GET /api (docs page)"]), "", nil)
	bin, err := os.Stat(*demoBin)
	if err != nil {
		return err
	}
	add("binary: demo (stripped)", mb(bin.Size()), "≤ 26 MB", ptr(bin.Size() <= 26e6))
	if m, err := os.Stat(minimal); err == nil {
		add("binary: minimal client-go (stripped)", mb(m.Size()), "", nil)
	}
	if *imageTar != "" {
		img, err := os.Stat(*imageTar)
		if err != nil {
			return err
		}
		layers, err := layerBytes(*imageTar)
		if err != nil {
			return err
		}
		add("image: demo", fmt.Sprintf("%s uncompressed (binary + %s); tarball %s (gzip)", mb(layers), mb(layers-bin.Size()), mb(img.Size())),
			"≤ binary + 1 MB", ptr(layers-bin.Size() <= 1e6))
	}

	// 4. Controller-style load.
	load, err := pod.load(ctx)
	if err != nil {
		return err
	}
	for _, mode := range []string{"sequential", "16 goroutines"} {
		lib, def, raw := load[mode]["library"], load[mode]["client-go defaults"], load[mode]["raw net/http"]
		add(fmt.Sprintf("%d GETs, %s: library defaults", *loadN, mode), fmt.Sprintf("%.0f ms", ms(lib)), "", nil)
		add(fmt.Sprintf("%d GETs, %s: client-go defaults (QPS 5, burst 10)", *loadN, mode), fmt.Sprintf("%.0f ms (%.0fx the library)", ms(def), float64(def)/float64(lib)), "≥ 50x the library", ptr(float64(def)/float64(lib) >= 50))
		add(fmt.Sprintf("%d GETs, %s: raw net/http, one connection", *loadN, mode), fmt.Sprintf("%.0f ms (library %.2fx raw)", ms(raw), float64(lib)/float64(raw)), "library ≤ 1.5x raw", ptr(float64(lib)/float64(raw) <= 1.5))
	}

	// 5. Start-up: package init.
	initMS, err := initCost(*demoBin)
	if err != nil {
		return err
	}
	add("package init (GODEBUG=inittrace=1)", fmt.Sprintf("%.2f ms", initMS), "< 10 ms", ptr(initMS < 10))

	return nil
}
