package main

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// userHZ is the unit of the CPU times in /proc (USER_HZ): 100 on every
// Linux this runs on. A figure is then good to 10 ms of CPU, so each run
// lasts seconds.
const userHZ = 100

// procRoot is where /proc is; tests point it at a fixture.
type procFS struct{ root string }

var hostProc = procFS{root: "/proc"}

// procStat is what one /proc/PID/stat line tells: the parent and the CPU
// time and resident set of the process (all of its threads).
type procStat struct {
	pid, ppid    int
	utime, stime int64 // ticks of userHZ
	rssPages     int64
}

// parseStat parses a /proc/PID/stat line. The command name, in parentheses,
// may itself hold spaces and parentheses: the fields start after the last
// ')'.
func parseStat(line []byte) (procStat, error) {
	open := bytes.IndexByte(line, '(')
	end := bytes.LastIndexByte(line, ')')
	if open < 1 || end < open {
		return procStat{}, errors.New("no (comm)")
	}
	pid, err := strconv.Atoi(string(bytes.TrimSpace(line[:open])))
	if err != nil {
		return procStat{}, fmt.Errorf("pid: %w", err)
	}
	f := strings.Fields(string(line[end+1:]))
	// f[0] is field 3 (state): field n is f[n-3].
	if len(f) < 22 {
		return procStat{}, fmt.Errorf("%d fields after the name, want at least 22", len(f))
	}
	var s procStat
	s.pid = pid
	nums := []struct {
		field int
		dst   *int64
	}{{14, &s.utime}, {15, &s.stime}, {24, &s.rssPages}}
	for _, n := range nums {
		v, err := strconv.ParseInt(f[n.field-3], 10, 64)
		if err != nil {
			return procStat{}, fmt.Errorf("field %d: %w", n.field, err)
		}
		*n.dst = v
	}
	ppid, err := strconv.Atoi(f[4-3])
	if err != nil {
		return procStat{}, fmt.Errorf("ppid: %w", err)
	}
	s.ppid = ppid
	return s, nil
}

// processes reads every process's stat line. Processes that end while it
// reads are left out.
func (p procFS) processes() (map[int]procStat, error) {
	ents, err := os.ReadDir(p.root)
	if err != nil {
		return nil, err
	}
	out := make(map[int]procStat, len(ents))
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join(p.root, e.Name(), "stat"))
		if err != nil {
			continue // ended meanwhile
		}
		s, err := parseStat(b)
		if err != nil {
			return nil, fmt.Errorf("%s/%d/stat: %w", p.root, pid, err)
		}
		out[pid] = s
	}
	return out, nil
}

// tree returns roots and all their descendants found in procs.
func tree(procs map[int]procStat, roots []int) map[int]bool {
	children := map[int][]int{}
	for pid, s := range procs {
		children[s.ppid] = append(children[s.ppid], pid)
	}
	in := map[int]bool{}
	queue := append([]int(nil), roots...)
	// Each pid is queued at most once: the walk is linear in procs.
	for len(queue) > 0 {
		pid := queue[0]
		queue = queue[1:]
		if in[pid] {
			continue
		}
		if _, ok := procs[pid]; !ok {
			continue
		}
		in[pid] = true
		queue = append(queue, children[pid]...)
	}
	return in
}

// kernelThreads are the children of kthreadd (PID 2) and kthreadd itself:
// their CPU (ksoftirqd working off loopback traffic, kworkers) is the
// kernel's, not another program's.
func kernelThreads(procs map[int]procStat) map[int]bool { return tree(procs, []int{2}) }

// ticksDelta is the CPU pids used between two snapshots, counting only
// processes present in both (one that started or ended between them is
// left out: the measured servers run throughout).
func ticksDelta(before, after map[int]procStat, pids map[int]bool) int64 {
	var n int64
	for pid := range pids {
		a, okA := after[pid]
		b, okB := before[pid]
		if okA && okB {
			n += (a.utime + a.stime) - (b.utime + b.stime)
		}
	}
	return n
}

// rssBytes sums the resident sets of pids.
func rssBytes(procs map[int]procStat, pids map[int]bool) int64 {
	var n int64
	for pid := range pids {
		n += procs[pid].rssPages
	}
	return n * int64(os.Getpagesize())
}

// openFDs counts the open file descriptors of pids.
func (p procFS) openFDs(pids map[int]bool) int {
	n := 0
	for pid := range pids {
		ents, err := os.ReadDir(filepath.Join(p.root, strconv.Itoa(pid), "fd"))
		if err == nil {
			n += len(ents)
		}
	}
	return n
}

// cpuTimes is the machine-wide line of /proc/stat, in ticks.
type cpuTimes struct {
	user, nice, system, idle, iowait, irq, softirq, steal int64
}

// busy is the time spent running processes (user, nice, system), which
// is what processes' utime and stime add up to.
func (c cpuTimes) busy() int64 { return c.user + c.nice + c.system }

func (c cpuTimes) sub(o cpuTimes) cpuTimes {
	return cpuTimes{c.user - o.user, c.nice - o.nice, c.system - o.system, c.idle - o.idle,
		c.iowait - o.iowait, c.irq - o.irq, c.softirq - o.softirq, c.steal - o.steal}
}

// parseProcStat reads the "cpu " line of /proc/stat.
func parseProcStat(b []byte) (cpuTimes, error) {
	for _, line := range bytes.Split(b, []byte("\n")) {
		f := strings.Fields(string(line))
		if len(f) < 9 || f[0] != "cpu" {
			continue
		}
		var v [8]int64
		for i := range v {
			n, err := strconv.ParseInt(f[i+1], 10, 64)
			if err != nil {
				return cpuTimes{}, fmt.Errorf("/proc/stat cpu field %d: %w", i+1, err)
			}
			v[i] = n
		}
		return cpuTimes{v[0], v[1], v[2], v[3], v[4], v[5], v[6], v[7]}, nil
	}
	return cpuTimes{}, errors.New("/proc/stat: no cpu line")
}

func (p procFS) cpu() (cpuTimes, error) {
	b, err := os.ReadFile(filepath.Join(p.root, "stat"))
	if err != nil {
		return cpuTimes{}, err
	}
	return parseProcStat(b)
}

// loadavg is the 1-minute load average.
func (p procFS) loadavg() float64 {
	b, err := os.ReadFile(filepath.Join(p.root, "loadavg"))
	if err != nil {
		return -1
	}
	f := strings.Fields(string(b))
	if len(f) == 0 {
		return -1
	}
	v, err := strconv.ParseFloat(f[0], 64)
	if err != nil {
		return -1
	}
	return v
}

// parsePIDs parses "12,34" into PIDs.
func parsePIDs(s string) ([]int, error) {
	var out []int
	for _, f := range strings.Split(s, ",") {
		f = strings.TrimSpace(f)
		if f == "" {
			continue
		}
		pid, err := strconv.Atoi(f)
		if err != nil || pid <= 0 {
			return nil, fmt.Errorf("bad PID %q", f)
		}
		out = append(out, pid)
	}
	return out, nil
}
