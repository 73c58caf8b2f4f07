// Command proxies is the measuring side of bench/proxies/run, the
// data-plane benchmark of iwalb against HAProxy and nginx (BENCHMARKS.md).
// The script starts the servers; this command measures one run at a time
// and appends a JSON record of it to a results file, then makes the report.
//
//	proxies wrk      -results F -figure F -target T -proxy PIDS -backend PIDS -- taskset -c 0 wrk ...
//	proxies newconns -results F -figure F -target T -proxy PIDS -addr A -sni NAME -c 16 -d 5s
//	proxies hold     -results F -figure F -target T -proxy PIDS -addr A -sni NAME -n 3000
//	proxies resumes  -results F -target T -addr A -sni NAME
//	proxies report   -results F -meta FILE -out DIR -benchmarks BENCHMARKS.md
//
// Each run reads utime+stime of the proxy's and the backend's processes
// (with their children) from /proc before and after, and the machine's
// CPU time from /proc/stat: what other processes used meanwhile marks the
// run "disturbed". See bench/proxies/README.md.
package main

import (
	"errors"
	"flag"
	"fmt"
	"os"
)

func main() {
	if len(os.Args) < 2 {
		usage()
		os.Exit(2)
	}
	cmds := map[string]func([]string) error{
		"wrk":      runWrk,
		"newconns": runNewConns,
		"hold":     runHold,
		"resumes":  runResumes,
		"report":   runReport,
	}
	cmd, ok := cmds[os.Args[1]]
	if !ok {
		usage()
		os.Exit(2)
	}
	if err := cmd(os.Args[2:]); err != nil {
		switch {
		case errors.Is(err, flag.ErrHelp):
			os.Exit(0)
		case errors.Is(err, errDisturbed):
			os.Exit(3)
		}
		fmt.Fprintf(os.Stderr, "proxies %s: %v\n", os.Args[1], err)
		os.Exit(1)
	}
}

func usage() {
	fmt.Fprintln(os.Stderr, "usage: proxies wrk|newconns|hold|resumes|report [flags] (see bench/proxies/README.md)")
}

// common are the flags every measuring subcommand takes.
type common struct {
	results, figure, target string
	proxy, backend          string
	notComparable           string
	maxOther, maxSteal      float64
	exitDisturbed           bool
}

// errDisturbed makes the command exit with status 3 (-exit-disturbed): the
// run was recorded, but other processes disturbed it.
var errDisturbed = errors.New("the run was disturbed (recorded all the same)")

func (c *common) register(fs *flag.FlagSet) {
	fs.StringVar(&c.results, "results", "", "JSON-lines file the record is appended to (required)")
	fs.StringVar(&c.figure, "figure", "", "figure name, e.g. l4_newconn (required)")
	fs.StringVar(&c.target, "target", "", "target: direct, haproxy, nginx or iwalb (required)")
	fs.StringVar(&c.proxy, "proxy", "", "PIDs of the proxy, comma-separated; their children count too")
	fs.StringVar(&c.backend, "backend", "", "PIDs of the backend, comma-separated; their children count too")
	fs.StringVar(&c.notComparable, "not-comparable", "", "why this figure is not comparable with its peers', if it is not")
	fs.Float64Var(&c.maxOther, "max-other", 0.10, "a run is disturbed when other processes use more than this fraction of a core")
	fs.Float64Var(&c.maxSteal, "max-steal", 0.05, "a run is disturbed when the hypervisor steals more than this fraction of a core")
	fs.BoolVar(&c.exitDisturbed, "exit-disturbed", false, "exit with status 3 when the run was disturbed")
}

func (c *common) check(needFigure bool) (watched, error) {
	if c.results == "" || c.target == "" || (needFigure && c.figure == "") {
		return watched{}, errors.New("-results, -target and -figure are required")
	}
	var w watched
	var err error
	if w.proxy, err = parsePIDs(c.proxy); err != nil {
		return w, fmt.Errorf("-proxy: %w", err)
	}
	if w.backend, err = parsePIDs(c.backend); err != nil {
		return w, fmt.Errorf("-backend: %w", err)
	}
	return w, nil
}

func (c *common) limits() limits { return limits{maxOther: c.maxOther, maxSteal: c.maxSteal} }

// save appends r to the results file; with -exit-disturbed, a disturbed
// run then returns errDisturbed.
func (c *common) save(r Record) error {
	if err := appendRecord(c.results, r); err != nil {
		return err
	}
	if c.exitDisturbed && r.Disturbed != "" {
		return errDisturbed
	}
	return nil
}

func (c *common) record() Record {
	return Record{Figure: c.figure, Target: c.target, NotComparable: c.notComparable}
}
