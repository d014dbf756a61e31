// Package kubernetes holds manifests that run vouch on Kubernetes. There
// is no cluster in CI; the tests decode the manifests and check that they
// agree with each other, with the configuration they mount (which vouch
// must accept) and with the Dockerfile's image.
package kubernetes

import (
	"bytes"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"

	"github.com/vouch-mail/vouch/milter/config"
	"github.com/vouch-mail/vouch/milter/socket"
)

// obj is a decoded manifest; at walks it by keys and list indices.
type obj map[string]any

func (o obj) at(path ...any) any {
	var v any = map[string]any(o)
	for _, p := range path {
		switch k := p.(type) {
		case string:
			m, ok := v.(map[string]any)
			if !ok {
				return nil
			}
			v = m[k]
		case int:
			l, ok := v.([]any)
			if !ok || k >= len(l) {
				return nil
			}
			v = l[k]
		}
	}
	return v
}

func (o obj) str(path ...any) string {
	switch v := o.at(path...).(type) {
	case string:
		return v
	case int:
		return strconv.Itoa(v)
	case bool:
		return strconv.FormatBool(v)
	}
	return ""
}

func (o obj) list(path ...any) []any { l, _ := o.at(path...).([]any); return l }

// load decodes every document of a manifest file.
func load(t *testing.T, file string) []obj {
	t.Helper()
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var out []obj
	for {
		// Into a plain map: yaml.v3 would make nested maps obj too.
		var o map[string]any
		err := dec.Decode(&o)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("%s: %v", file, err)
		}
		if o != nil {
			out = append(out, obj(o))
		}
	}
	return out
}

// one loads a file holding exactly one object of the given kind.
func one(t *testing.T, file, apiVersion, kind string) obj {
	t.Helper()
	objs := load(t, file)
	if len(objs) != 1 {
		t.Fatalf("%s: %d documents, want 1", file, len(objs))
	}
	o := objs[0]
	if o.str("apiVersion") != apiVersion || o.str("kind") != kind {
		t.Fatalf("%s: %s %s, want %s %s", file, o.str("apiVersion"), o.str("kind"), apiVersion, kind)
	}
	if kind != "Kustomization" && o.str("metadata", "name") == "" {
		t.Fatalf("%s: no metadata.name", file)
	}
	return o
}

type manifests struct {
	cm, deploy, svc, netpol, pdb obj
	cfg                          *config.Config
	container                    obj
	ports                        map[string]int // container port name -> number
}

func loadAll(t *testing.T) *manifests {
	t.Helper()
	m := &manifests{
		cm:     one(t, "configmap.yaml", "v1", "ConfigMap"),
		deploy: one(t, "deployment.yaml", "apps/v1", "Deployment"),
		svc:    one(t, "service.yaml", "v1", "Service"),
		netpol: one(t, "networkpolicy.yaml", "networking.k8s.io/v1", "NetworkPolicy"),
		pdb:    one(t, "poddisruptionbudget.yaml", "policy/v1", "PodDisruptionBudget"),
	}
	data := m.cm.str("data", "vouch.yaml")
	if data == "" {
		t.Fatal("configmap.yaml has no data.vouch.yaml")
	}
	p := filepath.Join(t.TempDir(), "vouch.yaml")
	os.WriteFile(p, []byte(data), 0o644)
	cfg, err := config.Load(p)
	if err != nil {
		t.Fatalf("the ConfigMap's vouch.yaml is refused by vouch: %v", err)
	}
	m.cfg = cfg
	containers := m.deploy.list("spec", "template", "spec", "containers")
	if len(containers) != 1 {
		t.Fatalf("deployment: %d containers, want 1", len(containers))
	}
	m.container = obj(containers[0].(map[string]any))
	m.ports = map[string]int{}
	for _, p := range m.container.list("ports") {
		po := obj(p.(map[string]any))
		n, _ := strconv.Atoi(po.str("containerPort"))
		m.ports[po.str("name")] = n
	}
	return m
}

// listenPort is the port of a listen address, failing if it is loopback:
// in a pod, loopback is unreachable from the MTA and the kubelet.
func listenPort(t *testing.T, what, hostPort string) int {
	t.Helper()
	host, port, err := net.SplitHostPort(hostPort)
	if err != nil {
		t.Fatalf("%s %q: %v", what, hostPort, err)
	}
	if ip := net.ParseIP(host); host == "localhost" || ip != nil && ip.IsLoopback() {
		t.Errorf("%s %q listens on loopback only: unreachable in a pod", what, hostPort)
	}
	n, _ := strconv.Atoi(port)
	return n
}

func TestConfigMatchesPorts(t *testing.T) {
	m := loadAll(t)
	a := m.cfg.Milter.Listen
	if a.Network == "unix" {
		t.Fatalf("milter.listen %s: want a TCP socket in a pod", a)
	}
	milterPort := listenPort(t, "milter.listen", a.Address)
	metricsPort := listenPort(t, "metrics.listen", m.cfg.Metrics.Listen)
	if m.ports["milter"] != milterPort || m.ports["metrics"] != metricsPort {
		t.Errorf("container ports %v, config listens on milter %d, metrics %d", m.ports, milterPort, metricsPort)
	}

	// Scrape annotations on the pods.
	ann := obj(m.deploy.at("spec", "template", "metadata", "annotations").(map[string]any))
	if ann.str("prometheus.io/scrape") != "true" || ann.str("prometheus.io/port") != strconv.Itoa(metricsPort) ||
		ann.str("prometheus.io/path") != "/metrics" {
		t.Errorf("scrape annotations %v do not point at :%d/metrics", ann, metricsPort)
	}

	// Probes: alive on /healthz, ready on /readyz, on the metrics port.
	for probe, path := range map[string]string{"livenessProbe": "/healthz", "readinessProbe": "/readyz"} {
		if got := m.container.str(probe, "httpGet", "path"); got != path {
			t.Errorf("%s path %q, want %q", probe, got, path)
		}
		if port := m.container.str(probe, "httpGet", "port"); port != "metrics" && port != strconv.Itoa(metricsPort) {
			t.Errorf("%s port %q is not the metrics port", probe, port)
		}
	}

	// The container reads the ConfigMap's file.
	args := m.container.list("args")
	i := slices.Index(args, any("-config"))
	if i < 0 || i+1 >= len(args) {
		t.Fatalf("args %v: no -config", args)
	}
	cfgPath := args[i+1].(string)
	mounted := false
	for _, vm := range m.container.list("volumeMounts") {
		vmo := obj(vm.(map[string]any))
		for _, v := range m.deploy.list("spec", "template", "spec", "volumes") {
			vo := obj(v.(map[string]any))
			if vo.str("name") == vmo.str("name") && vo.str("configMap", "name") == m.cm.str("metadata", "name") &&
				filepath.Join(vmo.str("mountPath"), "vouch.yaml") == cfgPath {
				mounted = true
			}
		}
	}
	if !mounted {
		t.Errorf("-config %s is not the ConfigMap %s's vouch.yaml mounted in the container", cfgPath, m.cm.str("metadata", "name"))
	}

	// Draining: a preStop sleep lets the endpoint leave the Service
	// before SIGTERM (docs/deployment.md), and the pod's grace period
	// outlasts that sleep plus vouch's shutdown_timeout.
	sleep, _ := strconv.Atoi(m.container.str("lifecycle", "preStop", "sleep", "seconds"))
	if sleep <= 0 {
		t.Errorf("no preStop sleep hook (lifecycle.preStop.sleep.seconds): sessions arriving before the endpoint is removed get tempfailed")
	}
	grace, _ := strconv.Atoi(m.deploy.str("spec", "template", "spec", "terminationGracePeriodSeconds"))
	if float64(grace) <= float64(sleep)+m.cfg.Milter.ShutdownTimeout.Seconds() {
		t.Errorf("terminationGracePeriodSeconds %d does not exceed preStop %ds + milter.shutdown_timeout %v: open SMTP sessions are killed",
			grace, sleep, m.cfg.Milter.ShutdownTimeout)
	}
}

// TestDisruptionBudget: voluntary evictions leave at least one of the
// replicas serving.
func TestDisruptionBudget(t *testing.T) {
	m := loadAll(t)
	labels := m.deploy.at("spec", "template", "metadata", "labels").(map[string]any)
	sel, _ := m.pdb.at("spec", "selector", "matchLabels").(map[string]any)
	if len(sel) == 0 {
		t.Fatal("the PodDisruptionBudget selects nothing")
	}
	for k, v := range sel {
		if labels[k] != v {
			t.Errorf("the PodDisruptionBudget's selector %s=%v does not match vouch's pods", k, v)
		}
	}
	replicas, _ := strconv.Atoi(m.deploy.str("spec", "replicas"))
	minAvail, err := strconv.Atoi(m.pdb.str("spec", "minAvailable"))
	if err != nil || minAvail < 1 || minAvail >= replicas {
		t.Errorf("minAvailable %q with %d replicas: want at least 1 and fewer than the replicas, or nodes cannot drain",
			m.pdb.str("spec", "minAvailable"), replicas)
	}
}

// TestImage: the Deployment's image is set by kustomization.yaml's
// images: to a registry and a pinned tag, never latest.
func TestImage(t *testing.T) {
	m := loadAll(t)
	image := m.container.str("image")
	if strings.ContainsAny(image, ":@") {
		t.Errorf("the Deployment names image %q; leave the tag to kustomization.yaml's images:", image)
	}
	k := one(t, "kustomization.yaml", "kustomize.config.k8s.io/v1beta1", "Kustomization")
	found := false
	for _, i := range k.list("images") {
		io := obj(i.(map[string]any))
		if io.str("name") != image {
			continue
		}
		found = true
		if tag := io.str("newTag"); tag == "" || tag == "latest" {
			t.Errorf("images: %s has newTag %q: pin a version", image, tag)
		}
		if io.str("newName") == "" {
			t.Errorf("images: %s has no newName (your registry)", image)
		}
	}
	if !found {
		t.Errorf("kustomization.yaml's images: does not set the Deployment's image %q", image)
	}
}

func TestSecurityContext(t *testing.T) {
	m := loadAll(t)
	pod := func(k string) string { return m.deploy.str("spec", "template", "spec", "securityContext", k) }
	ctr := func(path ...any) string { return m.container.str(append([]any{"securityContext"}, path...)...) }
	for _, c := range []struct{ what, got, want string }{
		{"pod runAsNonRoot", pod("runAsNonRoot"), "true"},
		{"container readOnlyRootFilesystem", ctr("readOnlyRootFilesystem"), "true"},
		{"container allowPrivilegeEscalation", ctr("allowPrivilegeEscalation"), "false"},
		{"pod seccompProfile", m.deploy.str("spec", "template", "spec", "securityContext", "seccompProfile", "type"), "RuntimeDefault"},
	} {
		if c.got != c.want {
			t.Errorf("%s = %q, want %q", c.what, c.got, c.want)
		}
	}
	if drop := m.container.list("securityContext", "capabilities", "drop"); !slices.Contains(drop, any("ALL")) {
		t.Errorf("capabilities.drop %v, want ALL", drop)
	}
	for _, r := range []string{"requests", "limits"} {
		if m.container.str("resources", r, "memory") == "" {
			t.Errorf("no resources.%s.memory", r)
		}
	}

	// The image's numeric USER is the pod's runAsUser: runAsNonRoot can
	// only verify a numeric user.
	df, err := os.ReadFile("../../Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	users := regexp.MustCompile(`(?m)^USER (\d+)(?::(\d+))?$`).FindAllSubmatch(df, -1)
	if len(users) != 1 {
		t.Fatalf("Dockerfile: %d numeric USER lines, want 1", len(users))
	}
	if uid := string(users[0][1]); pod("runAsUser") != uid {
		t.Errorf("runAsUser %q, Dockerfile USER %s", pod("runAsUser"), uid)
	}
	if gid := string(users[0][2]); gid != "" && pod("runAsGroup") != gid {
		t.Errorf("runAsGroup %q, Dockerfile USER group %s", pod("runAsGroup"), gid)
	}
}

// TestDockerfile checks that the image exposes and listens on the ports
// the manifests use, beyond loopback.
func TestDockerfile(t *testing.T) {
	m := loadAll(t)
	df, err := os.ReadFile("../../Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	expose := regexp.MustCompile(`(?m)^EXPOSE (.+)$`).FindSubmatch(df)
	if expose == nil {
		t.Fatal("Dockerfile has no EXPOSE")
	}
	exposed := strings.Fields(string(expose[1]))
	for name, port := range m.ports {
		if !slices.Contains(exposed, strconv.Itoa(port)) {
			t.Errorf("Dockerfile does not EXPOSE the %s port %d", name, port)
		}
	}
	if regexp.MustCompile(`(?m)^# *syntax=`).Match(df) {
		t.Error("Dockerfile has a # syntax= directive: the build would fetch its frontend from the network")
	}
	// A health check the distroless image can run: vouch's own, asking
	// the metrics port the CMD listens on (on loopback, its default).
	hc := regexp.MustCompile(`(?m)^HEALTHCHECK .*\\\n\s+CMD \[(.+)\]$|^HEALTHCHECK .*CMD \[(.+)\]$`).FindSubmatch(df)
	if hc == nil {
		t.Fatal("Dockerfile has no exec-form HEALTHCHECK")
	}
	hcArgs := string(hc[1]) + string(hc[2])
	if hcArgs != `"/usr/local/bin/vouch", "healthcheck"` {
		t.Errorf("HEALTHCHECK CMD [%s], want vouch healthcheck", hcArgs)
	} else if def := config.Default().Metrics.Listen; !strings.HasSuffix(def, ":"+strconv.Itoa(m.ports["metrics"])) {
		t.Errorf("HEALTHCHECK asks the default %s, the metrics port is %d", def, m.ports["metrics"])
	}
	cmd := regexp.MustCompile(`(?m)^CMD \[(.+)\]$`).FindSubmatch(df)
	if cmd == nil {
		t.Fatal("Dockerfile has no exec-form CMD")
	}
	var args []string
	for _, a := range strings.Split(string(cmd[1]), ",") {
		args = append(args, strings.Trim(strings.TrimSpace(a), `"`))
	}
	flag := func(name string) string {
		if i := slices.Index(args, name); i >= 0 && i+1 < len(args) {
			return args[i+1]
		}
		t.Fatalf("CMD %v lacks %s", args, name)
		return ""
	}
	a, err := socket.Parse(flag("-milter.listen"))
	if err != nil {
		t.Fatal(err)
	}
	if p := listenPort(t, "CMD -milter.listen", a.Address); p != m.ports["milter"] {
		t.Errorf("CMD milter port %d, container port %d", p, m.ports["milter"])
	}
	if p := listenPort(t, "CMD -metrics.listen", flag("-metrics.listen")); p != m.ports["metrics"] {
		t.Errorf("CMD metrics port %d, container port %d", p, m.ports["metrics"])
	}
}

func TestServiceAndPolicy(t *testing.T) {
	m := loadAll(t)
	labels := m.deploy.at("spec", "template", "metadata", "labels").(map[string]any)
	matches := func(sel any) bool {
		s, ok := sel.(map[string]any)
		if !ok || len(s) == 0 {
			return false
		}
		for k, v := range s {
			if labels[k] != v {
				return false
			}
		}
		return true
	}
	if !matches(m.deploy.at("spec", "selector", "matchLabels")) {
		t.Error("the Deployment's selector does not match its pods")
	}
	if !matches(m.svc.at("spec", "selector")) {
		t.Error("the Service's selector does not match vouch's pods")
	}
	if !matches(m.netpol.at("spec", "podSelector", "matchLabels")) {
		t.Error("the NetworkPolicy does not select vouch's pods")
	}
	svcPorts := map[string]bool{}
	for _, p := range m.svc.list("spec", "ports") {
		po := obj(p.(map[string]any))
		target := po.str("targetPort")
		if _, ok := m.ports[target]; !ok {
			t.Errorf("Service port %s targets %q, not a container port name", po.str("name"), target)
		}
		if po.str("port") != strconv.Itoa(m.ports[target]) {
			t.Errorf("Service port %s is %s, the container's %d", po.str("name"), po.str("port"), m.ports[target])
		}
		svcPorts[target] = true
	}
	if !svcPorts["milter"] || !svcPorts["metrics"] {
		t.Errorf("the Service exposes %v, want milter and metrics", svcPorts)
	}
	allowed := map[string]bool{}
	for _, rule := range m.netpol.list("spec", "ingress") {
		for _, p := range obj(rule.(map[string]any)).list("ports") {
			name := obj(p.(map[string]any)).str("port")
			if _, ok := m.ports[name]; !ok {
				t.Errorf("NetworkPolicy allows port %q, not a container port name", name)
			}
			allowed[name] = true
		}
	}
	if !allowed["milter"] || !allowed["metrics"] {
		t.Errorf("NetworkPolicy allows %v; the MTAs need milter and Prometheus metrics", allowed)
	}

	// The kustomization lists every manifest here, and only those.
	k := one(t, "kustomization.yaml", "kustomize.config.k8s.io/v1beta1", "Kustomization")
	var res []string
	for _, r := range k.list("resources") {
		res = append(res, r.(string))
	}
	files, _ := filepath.Glob("*.yaml")
	files = slices.DeleteFunc(files, func(f string) bool { return f == "kustomization.yaml" })
	slices.Sort(res)
	if !slices.Equal(res, files) {
		t.Errorf("kustomization resources %v, manifests %v", res, files)
	}
}
