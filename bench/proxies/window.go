package main

import (
	"fmt"
	"strings"
	"time"
)

// Record is one measured run: a figure for one target. The report reads
// the last Record of each (Figure, Target) from the results file.
type Record struct {
	Figure string `json:"figure"` // l4_newconn, l4_bulk, l4_small, l4_latency, l4_idle, l7_keepalive, l7_newconn, l7_newconn_noresume
	Target string `json:"target"` // direct, haproxy, nginx, iwalb
	Tool   string `json:"tool"`   // wrk, or the proxybench client that made the load
	Time   string `json:"time"`   // when the run ended, RFC 3339

	Seconds  float64 `json:"seconds"`  // measured time, as the load tool counts it
	Requests int64   `json:"requests"` // answers (one per connection on new connections)
	Bytes    int64   `json:"bytes"`    // read by the load tool
	Errors   int64   `json:"errors"`   // connect, read, write, timeout and non-2xx/3xx answers
	ErrorsBy string  `json:"errors_by,omitempty"`
	P50us    float64 `json:"p50_us,omitempty"`
	P99us    float64 `json:"p99_us,omitempty"`

	// CPU seconds over the window, from /proc: the proxy's processes, the
	// backend's, the load tool's, every other process's (kernel threads
	// apart), and the machine's softirq and steal time.
	ProxyCPU   float64 `json:"proxy_cpu_s"`
	BackendCPU float64 `json:"backend_cpu_s"`
	LoadCPU    float64 `json:"load_cpu_s"`
	KernelCPU  float64 `json:"kernel_threads_cpu_s"`
	OtherCPU   float64 `json:"other_cpu_s"`
	SoftirqCPU float64 `json:"softirq_cpu_s"`
	StealCPU   float64 `json:"steal_cpu_s"`
	WallS      float64 `json:"wall_s"` // the window's wall time
	LoadBefore float64 `json:"loadavg_before"`
	LoadAfter  float64 `json:"loadavg_after"`

	// Idle connections held (l4_idle): how many were open, and the proxy's
	// resident set before opening them and while holding them.
	Conns     int   `json:"conns,omitempty"`
	RSSBefore int64 `json:"rss_before_bytes,omitempty"`
	RSSAfter  int64 `json:"rss_after_bytes,omitempty"`
	FDsBefore int   `json:"fds_before,omitempty"` // the proxy's open file descriptors
	FDsAfter  int   `json:"fds_after,omitempty"`

	// Resumption check (figure "resumption"): whether a second connection
	// resumed the first one's TLS session.
	Resumed12 *bool `json:"resumed_tls12,omitempty"`
	Resumed13 *bool `json:"resumed_tls13,omitempty"`

	Disturbed     string `json:"disturbed,omitempty"`      // why the run is not clean; empty when clean
	NotComparable string `json:"not_comparable,omitempty"` // why the figure is not comparable with its peers'
}

// limits decide when a run counts as disturbed, as fractions of one core
// over the window.
type limits struct {
	maxOther float64 // other processes' CPU
	maxSteal float64 // the hypervisor's steal
}

// watched are the processes whose CPU a window splits out: the proxy's and
// the backend's (each a set of root PIDs, with their descendants).
type watched struct {
	proxy, backend []int
}

// window is the state of the machine at one point of a run.
type window struct {
	at      time.Time
	procs   map[int]procStat
	cpu     cpuTimes
	loadavg float64
}

func (p procFS) snapshot() (window, error) {
	w := window{at: time.Now(), loadavg: p.loadavg()}
	var err error
	if w.procs, err = p.processes(); err != nil {
		return w, err
	}
	if w.cpu, err = p.cpu(); err != nil {
		return w, err
	}
	return w, nil
}

// account fills r's CPU figures for the window from before to after. load
// is the load tool's own CPU seconds in the window, known to the caller
// (the child's rusage, or this process's), since a child that ended is no
// longer in after.
func account(r *Record, before, after window, w watched, load float64, lim limits) {
	tick := func(n int64) float64 { return float64(n) / userHZ }
	proxy := tree(before.procs, w.proxy)
	backend := tree(before.procs, w.backend)
	kernel := kernelThreads(before.procs)
	r.ProxyCPU = tick(ticksDelta(before.procs, after.procs, proxy))
	r.BackendCPU = tick(ticksDelta(before.procs, after.procs, backend))
	r.KernelCPU = tick(ticksDelta(before.procs, after.procs, kernel))
	r.LoadCPU = load
	d := after.cpu.sub(before.cpu)
	r.SoftirqCPU = tick(d.softirq)
	r.StealCPU = tick(d.steal)
	r.OtherCPU = max(0, tick(d.busy())-r.ProxyCPU-r.BackendCPU-r.KernelCPU-load)
	r.WallS = after.at.Sub(before.at).Seconds()
	r.LoadBefore, r.LoadAfter = before.loadavg, after.loadavg
	r.Time = after.at.UTC().Format(time.RFC3339)
	r.Disturbed = disturbed(r, lim)
}

// disturbed says why the run's figures may be off, or "" if they are not:
// other processes or the hypervisor took more than their share of a core.
func disturbed(r *Record, lim limits) string {
	if r.WallS <= 0 {
		return ""
	}
	var why []string
	if f := r.OtherCPU / r.WallS; f > lim.maxOther {
		why = append(why, fmt.Sprintf("other processes used %.0f%% of a core", 100*f))
	}
	if f := r.StealCPU / r.WallS; f > lim.maxSteal {
		why = append(why, fmt.Sprintf("steal %.0f%% of a core", 100*f))
	}
	return strings.Join(why, "; ")
}
