package main

// The container image (packaging/container/Containerfile) and the
// Kubernetes examples (packaging/kubernetes/), tested without a container
// runtime: the files are read as a builder and Kubernetes would read them,
// and, as root, the binary is built as the image builds it and run as the
// image and the pods would run it (as 65532:65532, in a root filesystem
// like the image's, PID 1 of its own PID namespace, in a network namespace
// of its own, with the pod's volumes and variables), probed as kubelet
// probes it, reloaded and stopped.

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"debug/elf"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
	"unsafe"

	"gopkg.in/yaml.v3"

	"github.com/iwalb/iwalb/cmd/iwalb/internal/configtest"
	"github.com/iwalb/iwalb/internal/testkit"
	"github.com/iwalb/iwalb/internal/testpki"
)

// repoRoot is the checkout's top folder, the image's build context.
const repoRoot = "../.."

// The image's base and the user it runs as, which the test's root
// filesystem copies.
const (
	imageBase = "gcr.io/distroless/static-debian12:nonroot"
	imageUser = "65532:65532"
	imageUID  = 65532
)

// ---- The Containerfile ----

// cfInstr is one instruction of a Containerfile: its keyword (upper case)
// and the rest of its line, continuation lines joined.
type cfInstr struct {
	cmd, args string
}

// cfStage is one FROM and the instructions up to the next.
type cfStage struct {
	from, name string
	instrs     []cfInstr
}

// parseContainerfile reads the stages of a Containerfile: comments and
// blank lines dropped, lines ending in a backslash joined to the next.
func parseContainerfile(t *testing.T, file string) []cfStage {
	t.Helper()
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatalf("read the Containerfile: %v", err)
	}
	var stages []cfStage
	var logical strings.Builder
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		if cont, ok := strings.CutSuffix(line, `\`); ok {
			logical.WriteString(cont + " ")
			continue
		}
		logical.WriteString(line)
		cmd, args, _ := strings.Cut(logical.String(), " ")
		logical.Reset()
		in := cfInstr{cmd: strings.ToUpper(cmd), args: strings.TrimSpace(args)}
		if in.cmd == "FROM" {
			var s cfStage
			for _, f := range strings.Fields(in.args) {
				switch {
				case strings.HasPrefix(f, "--"):
				case s.from == "":
					s.from = f
				case strings.EqualFold(f, "AS"):
				default:
					s.name = f
				}
			}
			stages = append(stages, s)
			continue
		}
		if len(stages) == 0 {
			if in.cmd == "ARG" {
				continue // an ARG before the first FROM
			}
			t.Fatalf("Containerfile: %s before the first FROM", in.cmd)
		}
		stages[len(stages)-1].instrs = append(stages[len(stages)-1].instrs, in)
	}
	if err := sc.Err(); err != nil {
		t.Fatalf("read the Containerfile: %v", err)
	}
	return stages
}

// all returns the arguments of every instruction cmd of the stage.
func (s cfStage) all(cmd string) []string {
	var out []string
	for _, in := range s.instrs {
		if in.cmd == cmd {
			out = append(out, in.args)
		}
	}
	return out
}

// one returns the arguments of the stage's one instruction cmd.
func (s cfStage) one(t *testing.T, cmd string) string {
	t.Helper()
	a := s.all(cmd)
	if len(a) != 1 {
		t.Fatalf("Containerfile: the stage FROM %s has %d %s instructions, want 1", s.from, len(a), cmd)
	}
	return a[0]
}

// cfCopy is a COPY of the final stage: from a stage, or from the build
// context when from is empty.
type cfCopy struct {
	from string
	srcs []string
	dst  string
}

func (s cfStage) copies(t *testing.T) []cfCopy {
	t.Helper()
	var out []cfCopy
	for _, a := range s.all("COPY") {
		var c cfCopy
		var words []string
		for _, f := range strings.Fields(a) {
			if v, ok := strings.CutPrefix(f, "--from="); ok {
				c.from = v
				continue
			}
			if strings.HasPrefix(f, "--") {
				t.Fatalf("Containerfile: COPY %s: the test knows no flag but --from", a)
			}
			words = append(words, f)
		}
		if len(words) < 2 {
			t.Fatalf("Containerfile: COPY %s: want sources and a destination", a)
		}
		c.srcs, c.dst = words[:len(words)-1], words[len(words)-1]
		if len(c.srcs) > 1 && !strings.HasSuffix(c.dst, "/") {
			t.Fatalf("Containerfile: COPY %s: several sources need a destination folder ending in /", a)
		}
		out = append(out, c)
	}
	return out
}

// execForm decodes an instruction's JSON (exec) form.
func execForm(t *testing.T, what, args string) []string {
	t.Helper()
	var v []string
	if err := json.Unmarshal([]byte(args), &v); err != nil {
		t.Fatalf("Containerfile: %s %s: not the exec form [\"...\"]: %v", what, args, err)
	}
	return v
}

// goBuildLine returns the go build command of a shell script, without its
// output file: `CGO_ENABLED=0 go build <flags>` up to " -o ".
var goBuildLine = regexp.MustCompile(`(?m)^\s*(CGO_ENABLED=\S+ go build .*?) -o `)

func buildCommand(t *testing.T, script string) string {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(repoRoot, script))
	if err != nil {
		t.Fatalf("read %s: %v", script, err)
	}
	m := goBuildLine.FindAllSubmatch(data, -1)
	if len(m) != 1 {
		t.Fatalf("%s: %d `CGO_ENABLED=... go build ... -o` lines, want 1", script, len(m))
	}
	return string(m[0][1])
}

// goModVersion is go.mod's go line.
func goModVersion(t *testing.T) string {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(repoRoot, "go.mod"))
	if err != nil {
		t.Fatalf("read go.mod: %v", err)
	}
	m := regexp.MustCompile(`(?m)^go (\S+)$`).FindSubmatch(data)
	if m == nil {
		t.Fatal("go.mod has no go line")
	}
	return string(m[1])
}

// containerImage is what the test needs of the Containerfile.
type containerImage struct {
	build, final cfStage
}

func readImage(t *testing.T) containerImage {
	t.Helper()
	stages := parseContainerfile(t, filepath.Join(repoRoot, "packaging/container/Containerfile"))
	if len(stages) != 2 {
		t.Fatalf("Containerfile: %d stages, want 2 (build, final)", len(stages))
	}
	return containerImage{build: stages[0], final: stages[1]}
}

// TestContainerfile checks the image definition as a builder reads it:
// the Go of go.mod, the binary built by build-binary with the Debian
// package's flags, the distroless base and its nonroot user, the
// entrypoint, the labels, and the ports the Kubernetes examples listen on.
func TestContainerfile(t *testing.T) {
	img := readImage(t)

	if want := "golang:" + goModVersion(t) + "-bookworm"; img.build.from != want {
		t.Errorf("build stage FROM %s, want %s (go.mod's go line)", img.build.from, want)
	}
	if img.build.name == "" {
		t.Error("the build stage has no name (FROM ... AS build)")
	}
	runs := img.build.all("RUN")
	if !slices.ContainsFunc(runs, func(r string) bool {
		return regexp.MustCompile(`(^|\s)packaging/container/build-binary /out/iwalb$`).MatchString(r)
	}) {
		t.Errorf("the build stage does not RUN packaging/container/build-binary /out/iwalb: %q", runs)
	}
	// The image's binary is stamped and built as the Debian package's.
	if img, pkg := buildCommand(t, "packaging/container/build-binary"), buildCommand(t, "scripts/package"); img != pkg {
		t.Errorf("build-binary builds with\n\t%s\nscripts/package with\n\t%s", img, pkg)
	}

	if img.final.from != imageBase {
		t.Errorf("final stage FROM %s, want %s (the root filesystem the test assembles is that image's)", img.final.from, imageBase)
	}
	if u := img.final.one(t, "USER"); u != imageUser {
		t.Errorf("USER %s, want %s (distroless's nonroot)", u, imageUser)
	}
	if ep := execForm(t, "ENTRYPOINT", img.final.one(t, "ENTRYPOINT")); !slices.Equal(ep, []string{"/usr/bin/iwalb"}) {
		t.Errorf("ENTRYPOINT %q, want [\"/usr/bin/iwalb\"]", ep)
	}
	copied := map[string]bool{}
	var binary bool
	for _, c := range img.final.copies(t) {
		for _, s := range c.srcs {
			dst := c.dst
			if strings.HasSuffix(dst, "/") {
				dst += path.Base(s)
			}
			copied[dst] = true
			switch c.from {
			case "":
				if _, err := os.Stat(filepath.Join(repoRoot, s)); err != nil {
					t.Errorf("COPY %s: not in the build context: %v", s, err)
				}
			case img.build.name:
				binary = binary || (s == "/out/iwalb" && dst == "/usr/bin/iwalb")
			default:
				t.Errorf("COPY --from=%s: no such stage", c.from)
			}
		}
	}
	if !binary {
		t.Errorf("the final stage does not COPY --from=%s /out/iwalb /usr/bin/iwalb", img.build.name)
	}
	cmd := execForm(t, "CMD", img.final.one(t, "CMD"))
	if len(cmd) != 3 || cmd[0] != "run" || cmd[1] != "-config" || !copied[cmd[2]] {
		t.Errorf("CMD %q, want [\"run\", \"-config\", FILE] with a FILE the image holds (%v)", cmd, copied)
	}

	labels := map[string]string{}
	for _, l := range img.final.all("LABEL") {
		for _, m := range regexp.MustCompile(`([\w.-]+)="([^"]*)"`).FindAllStringSubmatch(l, -1) {
			labels[m[1]] = m[2]
		}
	}
	for _, k := range []string{"title", "description", "source", "version", "revision", "created"} {
		if labels["org.opencontainers.image."+k] == "" {
			t.Errorf("no LABEL org.opencontainers.image.%s", k)
		}
	}

	// EXPOSE: the ports the examples' iwalb containers declare, which the
	// manifest test ties to their configurations' listeners.
	exposed := map[int]bool{}
	for _, e := range img.final.all("EXPOSE") {
		for _, p := range strings.Fields(e) {
			n, err := strconv.Atoi(strings.TrimSuffix(p, "/tcp"))
			if err != nil {
				t.Errorf("EXPOSE %s: not a TCP port", p)
			}
			exposed[n] = true
		}
	}
	declared := map[int]bool{}
	for _, w := range readManifests(t).workloads() {
		for _, c := range w.iwalbContainers() {
			for _, p := range c.Ports {
				declared[p.ContainerPort] = true
			}
		}
	}
	if fmt.Sprint(exposed) != fmt.Sprint(declared) {
		t.Errorf("EXPOSE %v, but the Kubernetes examples' containers listen on %v", keys(exposed), keys(declared))
	}
}

func keys[K int | string, V any](m map[K]V) []K {
	out := make([]K, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

// ---- The Kubernetes manifests ----

// k8sObject is the part of a Kubernetes object the examples use. Decoded
// with unknown fields refused, so that a misspelt field (which Kubernetes
// would drop or refuse) fails here too.
type k8sObject struct {
	APIVersion string            `yaml:"apiVersion"`
	Kind       string            `yaml:"kind"`
	Metadata   k8sMeta           `yaml:"metadata"`
	Data       map[string]string `yaml:"data"`
	Spec       k8sSpec           `yaml:"spec"`

	file string
}

type k8sMeta struct {
	Name        string            `yaml:"name"`
	Labels      map[string]string `yaml:"labels"`
	Annotations map[string]string `yaml:"annotations"`
}

// k8sSpec is a Service's, a Deployment's or a StatefulSet's spec.
type k8sSpec struct {
	// Service
	Type                     string           `yaml:"type"`
	ClusterIP                string           `yaml:"clusterIP"`
	ExternalTrafficPolicy    string           `yaml:"externalTrafficPolicy"`
	PublishNotReadyAddresses bool             `yaml:"publishNotReadyAddresses"`
	Ports                    []k8sServicePort `yaml:"ports"`
	// Deployment, StatefulSet
	Replicas            *int           `yaml:"replicas"`
	ServiceName         string         `yaml:"serviceName"`
	PodManagementPolicy string         `yaml:"podManagementPolicy"`
	Strategy            map[string]any `yaml:"strategy"`
	Template            struct {
		Metadata k8sMeta    `yaml:"metadata"`
		Spec     k8sPodSpec `yaml:"spec"`
	} `yaml:"template"`
	// Both: a Service's is a map of labels, a workload's has matchLabels.
	Selector k8sSelector `yaml:"selector"`
}

type k8sSelector map[string]string

func (s *k8sSelector) UnmarshalYAML(n *yaml.Node) error {
	var w struct {
		MatchLabels map[string]string `yaml:"matchLabels"`
	}
	if err := n.Decode(&w); err == nil && w.MatchLabels != nil {
		*s = w.MatchLabels
		return nil
	}
	var m map[string]string
	if err := n.Decode(&m); err != nil {
		return fmt.Errorf("selector: %w", err)
	}
	*s = m
	return nil
}

type k8sServicePort struct {
	Name       string      `yaml:"name"`
	Port       int         `yaml:"port"`
	TargetPort intOrString `yaml:"targetPort"`
	Protocol   string      `yaml:"protocol"`
}

// intOrString is a port given by number or by name.
type intOrString struct {
	num  int
	name string
}

func (p intOrString) String() string {
	if p.name != "" {
		return p.name
	}
	return strconv.Itoa(p.num)
}

func (p *intOrString) UnmarshalYAML(n *yaml.Node) error {
	if n.Tag == "!!int" {
		return n.Decode(&p.num)
	}
	return n.Decode(&p.name)
}

type k8sPodSpec struct {
	AutomountServiceAccountToken  *bool `yaml:"automountServiceAccountToken"`
	EnableServiceLinks            *bool `yaml:"enableServiceLinks"`
	TerminationGracePeriodSeconds int   `yaml:"terminationGracePeriodSeconds"`
	SecurityContext               struct {
		RunAsNonRoot   *bool  `yaml:"runAsNonRoot"`
		RunAsUser      *int64 `yaml:"runAsUser"`
		RunAsGroup     *int64 `yaml:"runAsGroup"`
		FSGroup        *int64 `yaml:"fsGroup"`
		SeccompProfile struct {
			Type string `yaml:"type"`
		} `yaml:"seccompProfile"`
	} `yaml:"securityContext"`
	InitContainers []k8sContainer `yaml:"initContainers"`
	Containers     []k8sContainer `yaml:"containers"`
	Volumes        []k8sVolume    `yaml:"volumes"`
}

type k8sContainer struct {
	Name    string   `yaml:"name"`
	Image   string   `yaml:"image"`
	Command []string `yaml:"command"`
	Args    []string `yaml:"args"`
	Ports   []struct {
		Name          string `yaml:"name"`
		ContainerPort int    `yaml:"containerPort"`
	} `yaml:"ports"`
	Env            []k8sEnv  `yaml:"env"`
	LivenessProbe  *k8sProbe `yaml:"livenessProbe"`
	ReadinessProbe *k8sProbe `yaml:"readinessProbe"`
	StartupProbe   *k8sProbe `yaml:"startupProbe"`
	Resources      struct {
		Requests map[string]string `yaml:"requests"`
		Limits   map[string]string `yaml:"limits"`
	} `yaml:"resources"`
	SecurityContext struct {
		AllowPrivilegeEscalation *bool `yaml:"allowPrivilegeEscalation"`
		ReadOnlyRootFilesystem   *bool `yaml:"readOnlyRootFilesystem"`
		Privileged               *bool `yaml:"privileged"`
		Capabilities             struct {
			Drop []string `yaml:"drop"`
			Add  []string `yaml:"add"`
		} `yaml:"capabilities"`
	} `yaml:"securityContext"`
	VolumeMounts []k8sMount `yaml:"volumeMounts"`
}

// kindProbe is a probe of a container, with its kind.
type kindProbe struct {
	kind  string // liveness, readiness, startup
	probe *k8sProbe
}

// probes returns the probes c has.
func (c *k8sContainer) probes() []kindProbe {
	var out []kindProbe
	for _, p := range []kindProbe{{"liveness", c.LivenessProbe}, {"readiness", c.ReadinessProbe}, {"startup", c.StartupProbe}} {
		if p.probe != nil {
			out = append(out, p)
		}
	}
	return out
}

type k8sEnv struct {
	Name      string `yaml:"name"`
	Value     string `yaml:"value"`
	ValueFrom *struct {
		SecretKeyRef *struct {
			Name string `yaml:"name"`
			Key  string `yaml:"key"`
		} `yaml:"secretKeyRef"`
		ResourceFieldRef *struct {
			Resource string `yaml:"resource"`
		} `yaml:"resourceFieldRef"`
	} `yaml:"valueFrom"`
}

type k8sProbe struct {
	HTTPGet *struct {
		Path   string      `yaml:"path"`
		Port   intOrString `yaml:"port"`
		Scheme string      `yaml:"scheme"`
	} `yaml:"httpGet"`
	InitialDelaySeconds int `yaml:"initialDelaySeconds"`
	PeriodSeconds       int `yaml:"periodSeconds"`
	TimeoutSeconds      int `yaml:"timeoutSeconds"`
	FailureThreshold    int `yaml:"failureThreshold"`
}

type k8sMount struct {
	Name      string `yaml:"name"`
	MountPath string `yaml:"mountPath"`
	ReadOnly  bool   `yaml:"readOnly"`
}

type k8sVolume struct {
	Name      string `yaml:"name"`
	ConfigMap *struct {
		Name        string `yaml:"name"`
		DefaultMode *int   `yaml:"defaultMode"`
	} `yaml:"configMap"`
	Secret *struct {
		SecretName  string `yaml:"secretName"`
		DefaultMode *int   `yaml:"defaultMode"`
	} `yaml:"secret"`
	EmptyDir *struct {
		Medium    string `yaml:"medium"`
		SizeLimit string `yaml:"sizeLimit"`
	} `yaml:"emptyDir"`
}

// manifests are the objects of every file in packaging/kubernetes/.
type manifests []*k8sObject

func readManifests(t *testing.T) manifests {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(repoRoot, "packaging/kubernetes/*.yaml"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no packaging/kubernetes/*.yaml (%v)", err)
	}
	var out manifests
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		dec := yaml.NewDecoder(bytes.NewReader(data))
		dec.KnownFields(true)
		for {
			o := &k8sObject{file: filepath.Base(f)}
			err := dec.Decode(o)
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				t.Fatalf("%s: %v", f, err)
			}
			if o.Kind == "" || o.Metadata.Name == "" {
				t.Fatalf("%s: an object without kind or name", f)
			}
			out = append(out, o)
		}
	}
	return out
}

func (ms manifests) find(kind, name string) *k8sObject {
	for _, o := range ms {
		if o.Kind == kind && o.Metadata.Name == name {
			return o
		}
	}
	return nil
}

func (ms manifests) workloads() []*k8sObject {
	var out []*k8sObject
	for _, o := range ms {
		if o.Kind == "Deployment" || o.Kind == "StatefulSet" {
			out = append(out, o)
		}
	}
	return out
}

func (o *k8sObject) String() string { return o.file + ": " + o.Kind + " " + o.Metadata.Name }

func (o *k8sObject) pod() *k8sPodSpec { return &o.Spec.Template.Spec }

// iwalbContainers are the pod's containers that run the image.
func (o *k8sObject) iwalbContainers() []*k8sContainer {
	var out []*k8sContainer
	for i := range o.pod().Containers {
		if c := &o.pod().Containers[i]; isIwalbImage(c.Image) {
			out = append(out, c)
		}
	}
	return out
}

// isIwalbImage says whether an image reference names the iwalb image, in
// whatever registry.
func isIwalbImage(ref string) bool {
	name, _, _ := strings.Cut(ref, "@")
	if i := strings.LastIndex(name, ":"); i > strings.LastIndex(name, "/") {
		name = name[:i]
	}
	return path.Base(name) == "iwalb"
}

func (o *k8sObject) volume(name string) *k8sVolume {
	for i := range o.pod().Volumes {
		if v := &o.pod().Volumes[i]; v.Name == name {
			return v
		}
	}
	return nil
}

// mountOf returns the mount of c that holds the file p (the longest
// mountPath above it), or nil.
func mountOf(c *k8sContainer, p string) *k8sMount {
	var best *k8sMount
	for i := range c.VolumeMounts {
		m := &c.VolumeMounts[i]
		if strings.HasPrefix(p, strings.TrimSuffix(m.MountPath, "/")+"/") && (best == nil || len(m.MountPath) > len(best.MountPath)) {
			best = m
		}
	}
	return best
}

// containerPort resolves a probe's or a Service's port against c's ports.
func containerPort(c *k8sContainer, p intOrString) (int, bool) {
	if p.name == "" {
		return p.num, p.num > 0
	}
	for _, cp := range c.Ports {
		if cp.Name == p.name {
			return cp.ContainerPort, true
		}
	}
	return 0, false
}

// ---- An iwalb configuration, as far as the pods are concerned ----

// podConfig is the configuration file an iwalb container runs.
type podConfig struct {
	path string         // in the container
	data []byte         // from the ConfigMap
	tree map[string]any // parsed
}

// configOf returns the configuration c runs: its args name the file, on
// a mount of a ConfigMap of the manifests that holds it.
func (ms manifests) configOf(t *testing.T, w *k8sObject, c *k8sContainer) podConfig {
	t.Helper()
	if len(c.Command) != 0 {
		t.Fatalf("%s: container %s sets command; the image's ENTRYPOINT runs iwalb", w, c.Name)
	}
	if len(c.Args) != 3 || c.Args[0] != "run" || c.Args[1] != "-config" {
		t.Fatalf("%s: container %s: args %q, want [run -config FILE]", w, c.Name, c.Args)
	}
	p := c.Args[2]
	m := mountOf(c, p)
	if m == nil {
		t.Fatalf("%s: container %s runs %s, which no volume mount holds", w, c.Name, p)
	}
	v := w.volume(m.Name)
	if v == nil || v.ConfigMap == nil {
		t.Fatalf("%s: %s is on volume %s, not a ConfigMap", w, p, m.Name)
	}
	cm := ms.find("ConfigMap", v.ConfigMap.Name)
	if cm == nil {
		t.Fatalf("%s: ConfigMap %s (holding %s) is not among the examples", w, v.ConfigMap.Name, p)
	}
	rel := strings.TrimPrefix(p, strings.TrimSuffix(m.MountPath, "/")+"/")
	data, ok := cm.Data[rel]
	if !ok {
		t.Fatalf("%s: %s has no key %s (the file %s)", w, cm, rel, p)
	}
	var tree map[string]any
	if err := yaml.Unmarshal([]byte(data), &tree); err != nil {
		t.Fatalf("%s: %s: %v", cm, rel, err)
	}
	return podConfig{path: p, data: []byte(data), tree: tree}
}

// get returns the value at a dotted path of the configuration.
func (pc podConfig) get(keyPath string) any {
	var v any = pc.tree
	for _, k := range strings.Split(keyPath, ".") {
		m, ok := v.(map[string]any)
		if !ok {
			return nil
		}
		v = m[k]
	}
	return v
}

func (pc podConfig) str(keyPath string) string {
	s, _ := pc.get(keyPath).(string)
	return s
}

// listener is an address the configuration listens on, and what serves
// there.
type listener struct {
	role string // authnode, metrics, admin, l4, l7redirect
	addr string
}

func (l listener) port(t *testing.T) int {
	t.Helper()
	_, p, err := net.SplitHostPort(l.addr)
	n, err2 := strconv.Atoi(p)
	if err != nil || err2 != nil {
		t.Fatalf("%s listens on %q: not host:port", l.role, l.addr)
	}
	return n
}

// loopback says whether only the pod itself can reach the listener.
func (l listener) loopback() bool {
	host, _, _ := net.SplitHostPort(l.addr)
	ip := net.ParseIP(host)
	return host == "localhost" || (ip != nil && ip.IsLoopback())
}

func (pc podConfig) listeners() []listener {
	var out []listener
	add := func(role string, v any) {
		if s, ok := v.(string); ok && s != "" {
			out = append(out, listener{role, s})
		}
	}
	add("metrics", pc.get("metrics.listen"))
	add("admin", pc.get("admin.listen"))
	add("authnode", pc.get("authnode.listen"))
	for _, role := range []string{"l4", "l7redirect"} {
		ls, _ := pc.get(role + ".listeners").([]any)
		for _, l := range ls {
			m, _ := l.(map[string]any)
			add(role, m["listen"])
			add(role+"-http", m["http_redirect_listen"])
		}
	}
	return out
}

// fileRef is a file the configuration names: the key naming it, and its
// path in the container.
type fileRef struct {
	key, path string
}

// files returns every file the configuration names (keys cert, key,
// client_ca, keytab, krb5_conf and *_file), relative paths resolved
// against the configuration's folder as iwalb resolves them.
func (pc podConfig) files() []fileRef {
	var out []fileRef
	var walk func(prefix string, v any)
	walk = func(prefix string, v any) {
		switch v := v.(type) {
		case map[string]any:
			for _, k := range keys(v) {
				kp := strings.TrimPrefix(prefix+"."+k, ".")
				if s, ok := v[k].(string); ok && (strings.HasSuffix(k, "_file") || slices.Contains([]string{"cert", "key", "client_ca", "keytab", "krb5_conf"}, k)) {
					if !path.IsAbs(s) {
						s = path.Join(path.Dir(pc.path), s)
					}
					out = append(out, fileRef{kp, s})
					continue
				}
				walk(kp, v[k])
			}
		case []any:
			for i, e := range v {
				walk(fmt.Sprintf("%s[%d]", prefix, i), e)
			}
		}
	}
	walk("", pc.tree)
	return out
}

// envVars returns the environment variables the configuration reads
// secrets from (*_env keys).
func (pc podConfig) envVars() []string {
	var out []string
	var walk func(v any)
	walk = func(v any) {
		switch v := v.(type) {
		case map[string]any:
			for k, e := range v {
				if s, ok := e.(string); ok && strings.HasSuffix(k, "_env") {
					out = append(out, s)
				}
				walk(e)
			}
		case []any:
			for _, e := range v {
				walk(e)
			}
		}
	}
	walk(pc.tree)
	slices.Sort(out)
	return out
}

// installScript is the init container's copy of Secret files into an
// emptyDir: install -m MODE SOURCE... DIR/.
var installScript = regexp.MustCompile(`^install -m (0[0-7]{3}) ((?:\S+ )+)(\S+/)$`)

// initCopy is what an init container puts on an emptyDir the iwalb
// container mounts: file names, with the volume and file each comes from.
type initCopy struct {
	mode    os.FileMode
	sources map[string]string // base name → "volume/key" of the source
}

// initCopyOf finds the init container that fills the emptyDir volume
// (mounted at dir in the iwalb container) and reads its install script.
func initCopyOf(t *testing.T, w *k8sObject, volume, dir string) initCopy {
	t.Helper()
	for _, ic := range w.pod().InitContainers {
		var at string
		for _, m := range ic.VolumeMounts {
			if m.Name == volume && !m.ReadOnly {
				at = m.MountPath
			}
		}
		if at == "" {
			continue
		}
		if at != dir {
			t.Fatalf("%s: init container %s mounts %s at %s, the iwalb container at %s", w, ic.Name, volume, at, dir)
		}
		if len(ic.Command) != 3 || ic.Command[1] != "-c" {
			t.Fatalf("%s: init container %s: command %q, want [SHELL -c SCRIPT]", w, ic.Name, ic.Command)
		}
		m := installScript.FindStringSubmatch(ic.Command[2])
		if m == nil || strings.TrimSuffix(m[3], "/") != strings.TrimSuffix(dir, "/") {
			t.Fatalf("%s: init container %s: script %q is not install -m MODE SOURCE... %s/", w, ic.Name, ic.Command[2], dir)
		}
		mode, _ := strconv.ParseUint(m[1], 8, 32)
		cp := initCopy{mode: os.FileMode(mode), sources: map[string]string{}}
		for _, src := range strings.Fields(m[2]) {
			sm := mountOf(&ic, src)
			if sm == nil {
				t.Fatalf("%s: init container %s copies %s, which none of its mounts holds", w, ic.Name, src)
			}
			sv := w.volume(sm.Name)
			if sv == nil || sv.Secret == nil {
				t.Fatalf("%s: init container %s copies %s from volume %s, not a Secret", w, ic.Name, src, sm.Name)
			}
			cp.sources[path.Base(src)] = sv.Secret.SecretName + "/" + strings.TrimPrefix(src, sm.MountPath+"/")
		}
		return cp
	}
	t.Fatalf("%s: no init container fills the emptyDir %s that holds secret files at %s", w, volume, dir)
	return initCopy{}
}

// TestKubernetesExamples checks the example manifests as Kubernetes would
// run them: the pods' security settings, that each probe asks a port and
// path the container's configuration serves, that every file and
// environment variable the configuration names comes from the pod, that
// the Services reach the containers' ports, and that the balancer's pool
// names the auth nodes as their StatefulSet and Service name them.
func TestKubernetesExamples(t *testing.T) {
	ms := readManifests(t)
	ws := ms.workloads()
	if len(ws) == 0 {
		t.Fatal("no Deployment or StatefulSet in packaging/kubernetes/")
	}
	wantUID, _ := strconv.ParseInt(strings.Split(imageUser, ":")[0], 10, 64)
	wantGID, _ := strconv.ParseInt(strings.Split(imageUser, ":")[1], 10, 64)
	configs := map[string]podConfig{} // by workload name
	for _, w := range ws {
		pod := w.pod()
		if !slices.Equal(keys(w.Spec.Selector), keys(w.Spec.Template.Metadata.Labels)) {
			// Only a subset is required, but the examples use the same labels.
			t.Errorf("%s: selector %v, pod labels %v", w, w.Spec.Selector, w.Spec.Template.Metadata.Labels)
		}
		sc := pod.SecurityContext
		if sc.RunAsNonRoot == nil || !*sc.RunAsNonRoot {
			t.Errorf("%s: securityContext.runAsNonRoot is not true", w)
		}
		if sc.RunAsUser == nil || *sc.RunAsUser != wantUID || sc.RunAsGroup == nil || *sc.RunAsGroup != wantGID {
			t.Errorf("%s: securityContext.runAsUser/runAsGroup are not the image's user %s", w, imageUser)
		}
		if sc.FSGroup != nil {
			// fsGroup makes Secret files group-readable, which iwalb run refuses.
			t.Errorf("%s: securityContext.fsGroup is set", w)
		}
		if sc.SeccompProfile.Type != "RuntimeDefault" {
			t.Errorf("%s: seccompProfile %q, want RuntimeDefault", w, sc.SeccompProfile.Type)
		}
		if pod.AutomountServiceAccountToken == nil || *pod.AutomountServiceAccountToken {
			t.Errorf("%s: automountServiceAccountToken is not false (iwalb does not talk to the API server)", w)
		}
		iw := w.iwalbContainers()
		if len(iw) != 1 {
			t.Fatalf("%s: %d containers run the iwalb image, want 1", w, len(iw))
		}
		c := iw[0]
		pc := ms.configOf(t, w, c)
		configs[w.Metadata.Name] = pc
		lsn := pc.listeners()
		lowPort := slices.ContainsFunc(lsn, func(l listener) bool { return l.port(t) < 1024 })

		for _, ct := range slices.Concat(pod.InitContainers, pod.Containers) {
			csc := ct.SecurityContext
			if csc.AllowPrivilegeEscalation == nil || *csc.AllowPrivilegeEscalation {
				t.Errorf("%s: container %s: allowPrivilegeEscalation is not false", w, ct.Name)
			}
			if csc.ReadOnlyRootFilesystem == nil || !*csc.ReadOnlyRootFilesystem {
				t.Errorf("%s: container %s: readOnlyRootFilesystem is not true", w, ct.Name)
			}
			if csc.Privileged != nil && *csc.Privileged {
				t.Errorf("%s: container %s is privileged", w, ct.Name)
			}
			if !slices.Equal(csc.Capabilities.Drop, []string{"ALL"}) {
				t.Errorf("%s: container %s: capabilities.drop %q, want [ALL]", w, ct.Name, csc.Capabilities.Drop)
			}
			var wantAdd []string
			if isIwalbImage(ct.Image) && lowPort {
				wantAdd = []string{"NET_BIND_SERVICE"}
			}
			if !slices.Equal(csc.Capabilities.Add, wantAdd) {
				t.Errorf("%s: container %s: capabilities.add %q, want %q (only for a listener below 1024)", w, ct.Name, csc.Capabilities.Add, wantAdd)
			}
			if ct.Resources.Requests["cpu"] == "" || ct.Resources.Requests["memory"] == "" || ct.Resources.Limits["memory"] == "" {
				t.Errorf("%s: container %s: want requests of cpu and memory and a memory limit, have %+v", w, ct.Name, ct.Resources)
			}
		}

		// Every listener others reach is a declared port, and each
		// declared port is a listener.
		ports := map[int]string{}
		for _, p := range c.Ports {
			ports[p.ContainerPort] = p.Name
		}
		listening := map[int]listener{}
		for _, l := range lsn {
			if l.loopback() {
				continue
			}
			listening[l.port(t)] = l
			if _, ok := ports[l.port(t)]; !ok {
				t.Errorf("%s: %s listens on %s, which the container does not declare in ports", w, l.role, l.addr)
			}
		}
		for p := range ports {
			if _, ok := listening[p]; !ok {
				t.Errorf("%s: container port %d: the configuration listens there on no non-loopback address", w, p)
			}
		}

		// Probes: on a port the configuration serves, with a path and
		// scheme that listener answers.
		if c.LivenessProbe == nil || c.ReadinessProbe == nil {
			t.Errorf("%s: the iwalb container needs a liveness and a readiness probe", w)
		}
		for _, pr := range c.probes() {
			g := pr.probe.HTTPGet
			if g == nil {
				t.Errorf("%s: %s probe is not httpGet", w, pr.kind)
				continue
			}
			port, ok := containerPort(c, g.Port)
			if !ok {
				t.Errorf("%s: %s probe port %v is not a container port", w, pr.kind, g.Port)
				continue
			}
			l, ok := listening[port]
			if !ok {
				t.Errorf("%s: %s probe on port %d, where the configuration does not listen (for kubelet)", w, pr.kind, port)
				continue
			}
			want := probeWant(l.role, pr.kind)
			if want == nil {
				t.Errorf("%s: %s probe on port %d, served by %s, which has no probe endpoint", w, pr.kind, port, l.role)
				continue
			}
			if g.Path != want.path || cmpScheme(g.Scheme) != want.scheme {
				t.Errorf("%s: %s probe %s %s on %s's port %d, want %s %s", w, pr.kind, cmpScheme(g.Scheme), g.Path, l.role, port, want.scheme, want.path)
			}
		}

		// Files: each on a volume of the pod; those on an emptyDir put
		// there by an init container, from a Secret.
		for _, f := range pc.files() {
			m := mountOf(c, f.path)
			if m == nil {
				t.Errorf("%s: %s names %s, which no volume mount holds", w, f.key, f.path)
				continue
			}
			v := w.volume(m.Name)
			switch {
			case v == nil:
				t.Errorf("%s: mount %s names no volume", w, m.Name)
			case v.EmptyDir != nil:
				cp := initCopyOf(t, w, m.Name, m.MountPath)
				if _, ok := cp.sources[path.Base(f.path)]; !ok {
					t.Errorf("%s: %s names %s, which the init container does not copy to %s", w, f.key, f.path, m.MountPath)
				}
				if cp.mode&0o077 != 0 {
					t.Errorf("%s: the init container copies secrets with mode %04o, open to group or others", w, cp.mode)
				}
			case v.Secret != nil && (v.Secret.DefaultMode == nil || *v.Secret.DefaultMode&0o077 != 0):
				t.Errorf("%s: %s is on Secret %s mounted with a mode open to others, which iwalb run refuses", w, f.key, v.Secret.SecretName)
			case v.ConfigMap != nil && ms.find("ConfigMap", v.ConfigMap.Name) != nil:
				cm := ms.find("ConfigMap", v.ConfigMap.Name)
				if _, ok := cm.Data[strings.TrimPrefix(f.path, m.MountPath+"/")]; !ok {
					t.Errorf("%s: %s names %s, which %s lacks", w, f.key, f.path, cm)
				}
			}
		}
		if slices.ContainsFunc(c.VolumeMounts, func(m k8sMount) bool { return !m.ReadOnly }) {
			t.Errorf("%s: the iwalb container's volume mounts are not all readOnly", w)
		}

		// Environment: each variable the configuration reads is set by the
		// container, from a Secret.
		env := map[string]k8sEnv{}
		for _, e := range c.Env {
			env[e.Name] = e
		}
		for _, name := range pc.envVars() {
			e, ok := env[name]
			if !ok {
				t.Errorf("%s: the configuration reads $%s, which the container does not set", w, name)
			} else if e.ValueFrom == nil || e.ValueFrom.SecretKeyRef == nil {
				t.Errorf("%s: $%s holds a secret, but does not come from a Secret", w, name)
			}
		}
		if e, ok := env["GOMEMLIMIT"]; !ok || e.ValueFrom == nil || e.ValueFrom.ResourceFieldRef == nil || e.ValueFrom.ResourceFieldRef.Resource != "limits.memory" {
			t.Errorf("%s: GOMEMLIMIT does not come from limits.memory", w)
		}
	}

	// Services: each selects a workload's pods and targets its ports.
	for _, s := range ms {
		if s.Kind != "Service" {
			continue
		}
		var target *k8sObject
		for _, w := range ws {
			if fmt.Sprint(s.Spec.Selector) == fmt.Sprint(w.Spec.Template.Metadata.Labels) {
				target = w
			}
		}
		if target == nil {
			t.Errorf("%s: selector %v selects no workload's pods", s, s.Spec.Selector)
			continue
		}
		c := target.iwalbContainers()[0]
		for _, p := range s.Spec.Ports {
			if _, ok := containerPort(c, p.TargetPort); !ok {
				t.Errorf("%s: port %s targets %v, which %s's container does not declare", s, p.Name, p.TargetPort, target)
			}
		}
	}

	// The balancer's pool names the auth nodes by their StatefulSet's
	// stable names, on the port they listen on, under the name their
	// certificate and keytab carry, and checks their /readyz.
	for _, w := range ws {
		pc := configs[w.Metadata.Name]
		pools, _ := pc.get("pools").([]any)
		for _, p := range pools {
			pm, _ := p.(map[string]any)
			backends, _ := pm["backends"].([]any)
			if h, _ := pm["health"].(map[string]any); h["check"] != "https" || h["path"] != "/readyz" {
				t.Errorf("%s: pool %v checks %v %v, want https /readyz", w, pm["name"], h["check"], h["path"])
			}
			seen := map[int]bool{}
			var nodes *k8sObject // the StatefulSet the backends are pods of
			for _, b := range backends {
				bm, _ := b.(map[string]any)
				addr, _ := bm["addr"].(string)
				m := regexp.MustCompile(`^([a-z0-9-]+)-(\d+)\.([a-z0-9-]+):(\d+)$`).FindStringSubmatch(addr)
				if m == nil {
					t.Errorf("%s: backend %s is not POD.SERVICE:PORT of a StatefulSet", w, addr)
					continue
				}
				ss := ms.find("StatefulSet", m[1])
				if ss == nil {
					t.Errorf("%s: backend %s: no StatefulSet %s", w, addr, m[1])
					continue
				}
				idx, _ := strconv.Atoi(m[2])
				seen[idx] = true
				node := configs[ss.Metadata.Name]
				svc := ms.find("Service", m[3])
				switch {
				case ss.Spec.ServiceName != m[3] || svc == nil:
					t.Errorf("%s: backend %s: service %s is not StatefulSet %s's serviceName %s", w, addr, m[3], ss.Metadata.Name, ss.Spec.ServiceName)
				case svc.Spec.ClusterIP != "None" || !svc.Spec.PublishNotReadyAddresses:
					t.Errorf("%s: Service %s must be headless and publish not-ready addresses, so the balancer's own checks decide", w, svc.Metadata.Name)
				case ss.Spec.Replicas == nil || idx >= *ss.Spec.Replicas:
					t.Errorf("%s: backend %s: StatefulSet %s has no pod %d", w, addr, ss.Metadata.Name, idx)
				case ":"+m[4] != node.str("authnode.listen"):
					t.Errorf("%s: backend %s, but the auth nodes listen on %s", w, addr, node.str("authnode.listen"))
				case bm["fqdn"] != node.str("authnode.fqdn"):
					t.Errorf("%s: backend %s has fqdn %v, the nodes' fqdn is %s", w, addr, bm["fqdn"], node.str("authnode.fqdn"))
				}
				nodes = ss
			}
			if len(seen) != len(backends) {
				t.Errorf("%s: pool %v names a pod twice", w, pm["name"])
			}
			if nodes != nil && nodes.Spec.Replicas != nil && len(backends) != *nodes.Spec.Replicas {
				t.Errorf("%s: pool %v has %d backends, StatefulSet %s %d replicas", w, pm["name"], len(backends), nodes.Metadata.Name, *nodes.Spec.Replicas)
			}
		}
	}
}

func cmpScheme(s string) string {
	if s == "" {
		return "HTTP"
	}
	return s
}

// probeEndpoint is where a role answers a probe of a kind.
type probeEndpoint struct {
	scheme, path string
}

// probeWant returns the endpoint that a listener of role serves for a
// probe of kind, or nil: the auth node's /healthz (alive) and /readyz
// (ready) over HTTPS; the metrics listener's /metrics for a process
// without such endpoints (the balancer), which answers once every listener
// is bound.
func probeWant(role, kind string) *probeEndpoint {
	switch {
	case role == "authnode" && kind == "readiness":
		return &probeEndpoint{"HTTPS", "/readyz"}
	case role == "authnode":
		return &probeEndpoint{"HTTPS", "/healthz"}
	case role == "metrics":
		return &probeEndpoint{"HTTP", "/metrics"}
	}
	return nil
}

// ---- Running the image's binary as the pods run it ----

// The environment distroless's image gives its processes, and that
// Kubernetes adds.
var imageEnv = []string{
	"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
	"SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt",
	"HOME=/home/nonroot",
}

// The base image's own files: its users and groups, and its CA bundle
// (from this machine's, as Debian's ca-certificates makes both).
const (
	distrolessPasswd = "root:x:0:0:root:/root:/sbin/nologin\n" +
		"nobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin\n" +
		"nonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n"
	distrolessGroup = "root:x:0:\nnobody:x:65534:\ntty:x:5:\nstaff:x:50:\nnonroot:x:65532:\n"
)

// TestContainerImageRuns builds the binary as the Containerfile does,
// checks that it is static and stamped, and runs each example pod's iwalb
// container on a root filesystem like the image's: iwalb check as the
// image's user, then iwalb run as PID 1 of its own PID namespace in a
// network namespace of its own; each probe the manifest names is asked
// as kubelet asks it; `iwalb reload` (what the manifests tell operators to
// exec) and SIGHUP to PID 1 reload it; SIGTERM stops it cleanly, and it
// wrote nothing on its root filesystem.
func TestContainerImageRuns(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: chroot, a user change to 65532 and namespaces (scripts/test runs as root)")
	}
	chroot, err1 := exec.LookPath("chroot")
	unshare, err2 := exec.LookPath("unshare")
	if err := errors.Join(err1, err2); err != nil {
		t.Fatalf("chroot (coreutils) and unshare (util-linux) are needed: %v", err)
	}
	// A machine that is itself a container may not allow new PID and
	// network namespaces even to root: the pods cannot be run there.
	if out, err := exec.Command(unshare, "--pid", "--net", "--fork", "true").CombinedOutput(); err != nil &&
		strings.Contains(string(out), "Operation not permitted") {
		t.Skipf("this machine refuses new namespaces to root (%s): the pods cannot run here", strings.TrimSpace(string(out)))
	}
	img := readImage(t)
	ms := readManifests(t)

	// The binary, built by the Containerfile's script in the environment
	// of the golang image (no GOFLAGS; the machine's own platform).
	bin := filepath.Join(t.TempDir(), "iwalb")
	const version, date = "0.0.0+containertest", "2026-01-02T03:04:05Z"
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	build := exec.CommandContext(ctx, filepath.Join(repoRoot, "packaging/container/build-binary"), bin)
	build.Env = append(withoutEnv(os.Environ(), "GOFLAGS", "GOOS", "GOARCH", "CGO_ENABLED"),
		"IWALB_VERSION="+version, "IWALB_BUILD_DATE="+date)
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("packaging/container/build-binary: %v\n%s", err, out)
	}
	checkStatic(t, bin)
	out, err := exec.Command(bin, "version").Output()
	if err != nil {
		t.Fatalf("iwalb version: %v", err)
	}
	if want := "iwalb " + version + "\nbuilt " + date + "\n"; !strings.HasPrefix(string(out), want) {
		t.Errorf("iwalb version says\n%s\nwant it to start with\n%s", out, want)
	}

	for _, w := range ms.workloads() {
		t.Run(w.Metadata.Name, func(t *testing.T) {
			t.Parallel()
			p := newPod(t, img, ms, w, bin)
			p.run(t, chroot, unshare)
		})
	}
}

// withoutEnv drops the variables names from env.
func withoutEnv(env []string, names ...string) []string {
	return slices.DeleteFunc(slices.Clone(env), func(kv string) bool {
		k, _, _ := strings.Cut(kv, "=")
		return slices.Contains(names, k)
	})
}

// checkStatic fails unless bin is a static executable: no program
// interpreter, no shared library, and ldd (when there is one) agrees.
func checkStatic(t *testing.T, bin string) {
	t.Helper()
	f, err := elf.Open(bin)
	if err != nil {
		t.Fatalf("%s: %v", bin, err)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP || p.Type == elf.PT_DYNAMIC {
			t.Errorf("the image's binary has a %v program header: it is not static", p.Type)
		}
	}
	if libs, _ := f.ImportedLibraries(); len(libs) > 0 {
		t.Errorf("the image's binary needs shared libraries %q", libs)
	}
	if ldd, err := exec.LookPath("ldd"); err == nil {
		out, _ := exec.Command(ldd, bin).CombinedOutput()
		if !bytes.Contains(out, []byte("not a dynamic executable")) {
			t.Errorf("ldd %s says\n%s\nwant: not a dynamic executable", bin, out)
		}
	}
}

// pod is one example pod's iwalb container, set up on a root filesystem.
type pod struct {
	w      *k8sObject
	c      *k8sContainer
	config podConfig
	root   string
	env    []string
	uid    int
}

// newPod assembles the root filesystem of w's iwalb container: the base
// image's files, the final stage's COPYs, and the pod's volumes at their
// mount paths, as Kubernetes fills them (ConfigMaps of the examples from
// the manifests; those the operator makes, Secrets and the init
// container's copies from a test CA and keytab, with Kubernetes's owners
// and modes).
func newPod(t *testing.T, img containerImage, ms manifests, w *k8sObject, bin string) *pod {
	t.Helper()
	c := w.iwalbContainers()[0]
	p := &pod{w: w, c: c, config: ms.configOf(t, w, c), root: t.TempDir(), uid: int(*w.pod().SecurityContext.RunAsUser)}
	if p.uid != imageUID {
		t.Fatalf("%s runs as %d, the image as %s", w, p.uid, imageUser)
	}

	// The base image.
	p.mkdir(t, "/etc", 0o755, 0)
	p.write(t, "/etc/passwd", []byte(distrolessPasswd), 0o644, 0)
	p.write(t, "/etc/group", []byte(distrolessGroup), 0o644, 0)
	p.write(t, "/etc/nsswitch.conf", []byte("passwd: files\ngroup: files\nhosts: files dns\n"), 0o644, 0)
	bundle, err := os.ReadFile("/etc/ssl/certs/ca-certificates.crt")
	if err != nil {
		bundle = testpki.NewCA(t, "bundle stand-in").PEM()
	}
	p.write(t, "/etc/ssl/certs/ca-certificates.crt", bundle, 0o644, 0)
	p.mkdir(t, "/tmp", 0o777|os.ModeSticky, 0)
	p.mkdir(t, "/home/nonroot", 0o700, imageUID)
	p.mkdir(t, "/proc", 0o555, 0)

	// The final stage.
	for _, cp := range img.final.copies(t) {
		for _, s := range cp.srcs {
			dst := cp.dst
			if strings.HasSuffix(dst, "/") {
				dst += path.Base(s)
			}
			var data []byte
			var err error
			if cp.from == "" {
				data, err = os.ReadFile(filepath.Join(repoRoot, s))
			} else {
				data, err = os.ReadFile(bin) // the build stage's only product
			}
			if err != nil {
				t.Fatal(err)
			}
			mode := os.FileMode(0o644)
			if cp.from != "" {
				mode = 0o755
			}
			p.write(t, dst, data, mode, 0)
		}
	}

	// The pod's volumes: the files each mount shows.
	ca := testpki.NewCA(t, "iwalb container test CA")
	fqdn := p.config.str("authnode.fqdn")
	var leaf *testpki.Cert
	if fqdn != "" {
		leaf = ca.Issue(t, fqdn)
	}
	contents := func(f fileRef) []byte {
		switch key := f.key[strings.LastIndex(f.key, ".")+1:]; {
		case key == "keytab":
			dir := t.TempDir()
			configtest.WriteKeytab(t, dir, "kt", p.config.str("authnode.kerberos.realm"), "HTTP/"+fqdn)
			data, err := os.ReadFile(filepath.Join(dir, "kt"))
			if err != nil {
				t.Fatal(err)
			}
			return data
		case key == "cert" && leaf != nil:
			return leaf.PEM()
		case key == "key" && leaf != nil:
			return leaf.KeyPEM(t)
		case key == "ca_file" || key == "client_ca":
			return ca.PEM()
		case strings.HasSuffix(key, "_file"):
			return []byte(randomSecret(t) + "\n")
		}
		t.Fatalf("%s: %s names %s, which the test does not know how to make", w, f.key, f.path)
		return nil
	}
	for _, m := range c.VolumeMounts {
		v := w.volume(m.Name)
		switch {
		case v == nil:
			t.Fatalf("%s: mount %s names no volume", w, m.Name)
		case v.ConfigMap != nil && ms.find("ConfigMap", v.ConfigMap.Name) != nil:
			for k, data := range ms.find("ConfigMap", v.ConfigMap.Name).Data {
				p.write(t, path.Join(m.MountPath, k), []byte(data), volumeMode(v), 0)
			}
		case v.ConfigMap != nil || v.Secret != nil:
			// Made by the operator: the files the configuration reads there.
			for _, f := range p.config.files() {
				if fm := mountOf(c, f.path); fm != nil && fm.Name == m.Name {
					p.write(t, f.path, contents(f), volumeMode(v), 0)
				}
			}
		case v.EmptyDir != nil:
			cp := initCopyOf(t, w, m.Name, m.MountPath)
			p.mkdir(t, m.MountPath, 0o777, 0)
			for _, f := range p.config.files() {
				if fm := mountOf(c, f.path); fm != nil && fm.Name == m.Name {
					if _, ok := cp.sources[path.Base(f.path)]; !ok {
						t.Fatalf("%s: the init container does not copy %s", w, f.path)
					}
					// install, as the pod's user, makes the copy its own.
					p.write(t, f.path, contents(f), cp.mode, p.uid)
				}
			}
		default:
			t.Fatalf("%s: volume %s: the test knows ConfigMap, Secret and emptyDir volumes only", w, m.Name)
		}
	}

	// The container's environment: the image's, then the pod's.
	p.env = slices.Clone(imageEnv)
	for _, e := range c.Env {
		switch {
		case e.ValueFrom == nil:
			p.env = append(p.env, e.Name+"="+e.Value)
		case e.ValueFrom.SecretKeyRef != nil:
			p.env = append(p.env, e.Name+"="+randomSecret(t))
		case e.ValueFrom.ResourceFieldRef != nil && e.ValueFrom.ResourceFieldRef.Resource == "limits.memory":
			p.env = append(p.env, e.Name+"="+strconv.FormatInt(quantity(t, c.Resources.Limits["memory"]), 10))
		default:
			t.Fatalf("%s: $%s: the test knows value, secretKeyRef and resourceFieldRef limits.memory only", w, e.Name)
		}
	}
	return p
}

// volumeMode is the mode Kubernetes gives a ConfigMap's or Secret's files:
// defaultMode, 0644 when left out.
func volumeMode(v *k8sVolume) os.FileMode {
	switch {
	case v.ConfigMap != nil && v.ConfigMap.DefaultMode != nil:
		return os.FileMode(*v.ConfigMap.DefaultMode)
	case v.Secret != nil && v.Secret.DefaultMode != nil:
		return os.FileMode(*v.Secret.DefaultMode)
	}
	return 0o644
}

// quantity reads a Kubernetes memory quantity in Ki, Mi or Gi as bytes,
// as resourceFieldRef gives it.
func quantity(t *testing.T, q string) int64 {
	t.Helper()
	for i, suffix := range []string{"Ki", "Mi", "Gi"} {
		if n, ok := strings.CutSuffix(q, suffix); ok {
			v, err := strconv.ParseInt(n, 10, 64)
			if err != nil {
				break
			}
			return v << (10 * (i + 1))
		}
	}
	t.Fatalf("memory quantity %q: the test reads NKi, NMi and NGi", q)
	return 0
}

func randomSecret(t *testing.T) string {
	b := make([]byte, 24)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}

// mkdir makes dir in the root filesystem (and the folders above it, owned
// by root, 0755).
func (p *pod) mkdir(t *testing.T, dir string, mode os.FileMode, uid int) {
	t.Helper()
	full := filepath.Join(p.root, dir)
	if err := os.MkdirAll(full, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(full, mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(full, uid, uid); err != nil {
		t.Fatal(err)
	}
}

// write writes a file of the root filesystem with its mode and owner.
func (p *pod) write(t *testing.T, file string, data []byte, mode os.FileMode, uid int) {
	t.Helper()
	full := filepath.Join(p.root, file)
	if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(full, data, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(full, mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(full, uid, uid); err != nil {
		t.Fatal(err)
	}
}

// snapshot lists every path of the root filesystem but /proc with its
// size and mode.
func (p *pod) snapshot(t *testing.T) map[string]string {
	t.Helper()
	out := map[string]string{}
	err := filepath.WalkDir(p.root, func(full string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(p.root, full)
		if rel == "proc" {
			return filepath.SkipDir
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		out[rel] = fmt.Sprintf("%v %d %v", fi.Mode(), fi.Size(), fi.ModTime().UnixNano())
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// command runs iwalb ARGS in the root filesystem as the pod's user:
// chroot --userspec, with the container's environment.
func (p *pod) command(ctx context.Context, chroot string, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, chroot, append([]string{fmt.Sprintf("--userspec=%d:%d", p.uid, p.uid), p.root, "/usr/bin/iwalb"}, args...)...)
	cmd.Env = p.env
	return cmd
}

// run checks, serves, probes, reloads and stops the pod's iwalb.
func (p *pod) run(t *testing.T, chroot, unshare string) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	// iwalb check, as the container's user: every file readable, nothing
	// to warn about (iwalb run refuses warnings).
	out, err := p.command(ctx, chroot, "check", "-config", p.config.path).CombinedOutput()
	if err != nil || string(out) != p.config.path+": ok\n" {
		t.Fatalf("iwalb check -config %s in %s's container: %v\n%s", p.config.path, p.w, err, out)
	}

	ns := newNetns(t)
	before := p.snapshot(t)
	var logs testkit.Buffer // written while the test reads it
	// PID 1 of a PID namespace with its own /proc, as in a container.
	cmd := exec.Command(unshare, append([]string{"--pid", "--fork", "--kill-child", "--mount-proc=" + filepath.Join(p.root, "proc"), "--",
		chroot, fmt.Sprintf("--userspec=%d:%d", p.uid, p.uid), p.root, "/usr/bin/iwalb"}, p.c.Args...)...)
	cmd.Env = p.env
	cmd.Stdout, cmd.Stderr = &logs, &logs
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	ns.do(func() { err = cmd.Start() })
	if err != nil {
		t.Fatalf("start %s: %v", cmd, err)
	}
	// exited is closed when the process has exited, with its error in waitErr.
	exited := make(chan struct{})
	var waitErr error
	go func() { waitErr = cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
		}
		if t.Failed() {
			t.Logf("%s's iwalb said:\n%s", p.w, logs.String())
		}
	})
	pid1 := childOf(t, cmd.Process.Pid)

	client := &http.Client{Transport: &http.Transport{
		DialContext:       ns.dial,
		TLSClientConfig:   &tls.Config{InsecureSkipVerify: true}, // as kubelet's probes
		DisableKeepAlives: true,
	}}
	get := func(scheme string, port int, p string, timeout time.Duration) (int, string, error) {
		ctx, cancel := context.WithTimeout(ctx, timeout)
		defer cancel()
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, fmt.Sprintf("%s://127.0.0.1:%d%s", strings.ToLower(scheme), port, p), nil)
		if err != nil {
			return 0, "", err
		}
		req.Header.Set("User-Agent", "kube-probe/1.31")
		resp, err := client.Do(req)
		if err != nil {
			return 0, "", err
		}
		defer resp.Body.Close()
		body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		return resp.StatusCode, string(body), err
	}

	// Each probe, as kubelet sends it, until the process answers (at most
	// 15 s; a process that exits fails at once).
	for _, pr := range p.c.probes() {
		g := pr.probe.HTTPGet
		port, _ := containerPort(p.c, g.Port)
		timeout := time.Duration(max(pr.probe.TimeoutSeconds, 1)) * time.Second
		deadline := time.Now().Add(15 * time.Second)
		var status int
		var body string
		for {
			status, body, err = get(cmpScheme(g.Scheme), port, g.Path, timeout)
			if err == nil || time.Now().After(deadline) {
				break
			}
			select {
			case <-exited:
				t.Fatalf("iwalb exited before answering the %s probe: %v", pr.kind, waitErr)
			case <-time.After(100 * time.Millisecond):
			}
		}
		if err != nil {
			t.Fatalf("%s probe %s %s on port %d: %v", pr.kind, g.Scheme, g.Path, port, err)
		}
		switch g.Path {
		case "/healthz":
			if status != http.StatusOK || body != "ok\n" {
				t.Errorf("%s probe %s: %d %q, want 200 ok", pr.kind, g.Path, status, body)
			}
		case "/metrics":
			if status != http.StatusOK || !strings.Contains(body, "\niwalb_config_generation 1\n") {
				t.Errorf("%s probe %s: %d, want 200 with iwalb_config_generation 1", pr.kind, g.Path, status)
			}
		case "/readyz":
			// There is no domain controller, KDC or Redis here, so the
			// node is alive but not ready: the readiness JSON, with 503.
			var v struct {
				Ready *bool `json:"ready"`
			}
			if err := json.Unmarshal([]byte(body), &v); status != http.StatusServiceUnavailable || err != nil || v.Ready == nil || *v.Ready {
				t.Errorf("%s probe %s without a domain: %d %q, want 503 and {\"ready\":false,...}", pr.kind, g.Path, status, body)
			}
		default:
			t.Errorf("%s probe %s: the test does not know what it should answer", pr.kind, g.Path)
		}
	}

	// Reloads: `iwalb reload` in the container (kubectl exec), then
	// SIGHUP to PID 1; the metrics say which generation runs.
	var metricsPort int
	for _, l := range p.config.listeners() {
		if l.role == "metrics" {
			metricsPort = l.port(t)
		}
	}
	generation := func(want int) {
		t.Helper()
		line := fmt.Sprintf("\niwalb_config_generation %d\n", want)
		deadline := time.Now().Add(10 * time.Second)
		for {
			_, body, err := get("HTTP", metricsPort, "/metrics", 2*time.Second)
			if err == nil && strings.Contains(body, line) {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("the metrics do not say iwalb_config_generation %d (%v)", want, err)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	if metricsPort == 0 {
		t.Fatal("the configuration has no metrics listener")
	}
	reload := p.command(ctx, chroot, "reload", "-config", p.config.path)
	var reloadOut []byte
	ns.do(func() { reloadOut, err = reload.CombinedOutput() })
	if err != nil || !strings.HasPrefix(string(reloadOut), "reloaded: generation 2,") {
		t.Fatalf("iwalb reload -config %s in the container: %v\n%s", p.config.path, err, reloadOut)
	}
	generation(2)
	if err := syscall.Kill(pid1, syscall.SIGHUP); err != nil {
		t.Fatalf("SIGHUP to PID 1: %v", err)
	}
	generation(3)

	// SIGTERM to PID 1: a clean exit, within the drain timeout and well
	// within the pod's terminationGracePeriodSeconds.
	grace := time.Duration(p.w.pod().TerminationGracePeriodSeconds) * time.Second
	if grace == 0 {
		grace = 30 * time.Second
	}
	stopped := time.Now()
	if err := syscall.Kill(pid1, syscall.SIGTERM); err != nil {
		t.Fatalf("SIGTERM to PID 1: %v", err)
	}
	select {
	case <-exited:
		if waitErr != nil {
			t.Errorf("iwalb, sent SIGTERM as PID 1, exited with %v", waitErr)
		}
		if took := time.Since(stopped); took > grace/2 {
			t.Errorf("iwalb took %v to stop, more than half the pod's grace period %v", took, grace)
		}
	case <-time.After(min(grace, 20*time.Second)):
		t.Fatalf("iwalb did not exit within %v of SIGTERM", min(grace, 20*time.Second))
	}

	// Nothing written: the image runs with a read-only root filesystem.
	after := p.snapshot(t)
	for k, v := range after {
		if before[k] != v {
			t.Errorf("iwalb wrote %s in its root filesystem", k)
		}
	}
	for k := range before {
		if _, ok := after[k]; !ok {
			t.Errorf("iwalb removed %s from its root filesystem", k)
		}
	}
	if len(logs.Records(t, "iwalb stopped")) != 1 {
		t.Errorf("the JSON log does not say \"iwalb stopped\" once")
	}
}

// childOf returns the one child process of pid (unshare's forked child,
// PID 1 of its namespace), waiting up to 5 s for it.
func childOf(t *testing.T, pid int) int {
	t.Helper()
	file := fmt.Sprintf("/proc/%d/task/%d/children", pid, pid)
	deadline := time.Now().Add(5 * time.Second)
	for {
		data, err := os.ReadFile(file)
		if err != nil {
			t.Fatalf("the process of the container: %v", err)
		}
		if f := strings.Fields(string(data)); len(f) == 1 {
			child, err := strconv.Atoi(f[0])
			if err != nil {
				t.Fatalf("%s: %q", file, data)
			}
			return child
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s says %q after 5 s, want one child", file, data)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// netns is a network namespace of the test's own, with its loopback up, as
// a pod's. A goroutine locked to a thread that moved into it runs what
// must happen there: starting the pod's processes (which inherit it) and
// opening sockets (which belong to the namespace they were made in).
type netns struct {
	calls chan func()
}

func newNetns(t *testing.T) *netns {
	t.Helper()
	ns := &netns{calls: make(chan func())}
	ready := make(chan error, 1)
	go func() {
		// Never unlocked: the thread ends with this goroutine rather than
		// run other goroutines in the namespace.
		runtime.LockOSThread()
		if err := syscall.Unshare(syscall.CLONE_NEWNET); err != nil {
			ready <- fmt.Errorf("unshare the network namespace: %w", err)
			return
		}
		if err := loopbackUp(); err != nil {
			ready <- err
			return
		}
		ready <- nil
		for f := range ns.calls {
			f()
		}
	}()
	if err := <-ready; err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { close(ns.calls) })
	return ns
}

// do runs f on the namespace's thread and waits for it.
func (ns *netns) do(f func()) {
	done := make(chan struct{})
	ns.calls <- func() {
		defer close(done)
		f()
	}
	<-done
}

// dial opens a connection from inside the namespace.
func (ns *netns) dial(ctx context.Context, network, addr string) (net.Conn, error) {
	var c net.Conn
	var err error
	ns.do(func() {
		var d net.Dialer
		c, err = d.DialContext(ctx, network, addr)
	})
	return c, err
}

// loopbackUp brings up lo in the calling thread's network namespace
// (ip link set lo up).
func loopbackUp() error {
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_DGRAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("socket for lo: %w", err)
	}
	defer syscall.Close(fd)
	var req struct {
		name  [syscall.IFNAMSIZ]byte
		flags uint16
		_     [22]byte
	}
	copy(req.name[:], "lo")
	if _, _, e := syscall.Syscall(syscall.SYS_IOCTL, uintptr(fd), syscall.SIOCGIFFLAGS, uintptr(unsafe.Pointer(&req))); e != 0 {
		return fmt.Errorf("flags of lo: %w", e)
	}
	req.flags |= syscall.IFF_UP
	if _, _, e := syscall.Syscall(syscall.SYS_IOCTL, uintptr(fd), syscall.SIOCSIFFLAGS, uintptr(unsafe.Pointer(&req))); e != 0 {
		return fmt.Errorf("bring lo up: %w", e)
	}
	return nil
}
