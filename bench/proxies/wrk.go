package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"time"
)

// wrkOut is what bench/proxies/wrk.lua's done() writes to $PB_OUT.
type wrkOut struct {
	Requests   int64   `json:"requests"`
	Bytes      int64   `json:"bytes"`
	DurationUS int64   `json:"duration_us"`
	Connect    int64   `json:"connect_errors"`
	Read       int64   `json:"read_errors"`
	Write      int64   `json:"write_errors"`
	Status     int64   `json:"status_errors"`
	Timeout    int64   `json:"timeouts"`
	LatP50US   float64 `json:"lat_p50_us"`
	LatP99US   float64 `json:"lat_p99_us"`
}

// runWrk runs the command after "--" (wrk with bench/proxies/wrk.lua,
// pinned by taskset) and records its figures with the CPU of the window.
func runWrk(args []string) error {
	fs := flag.NewFlagSet("wrk", flag.ContinueOnError)
	var c common
	c.register(fs)
	timeout := fs.Duration("timeout", 2*time.Minute, "kill the command after this long")
	if err := fs.Parse(args); err != nil {
		return err
	}
	w, err := c.check(true)
	if err != nil {
		return err
	}
	argv := fs.Args()
	if len(argv) == 0 {
		return errors.New("no command after the flags (-- taskset -c 0 wrk ...)")
	}
	out, err := os.CreateTemp("", "proxies-wrk-*.json")
	if err != nil {
		return err
	}
	out.Close()
	defer os.Remove(out.Name())

	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.Env = append(os.Environ(), "PB_OUT="+out.Name())
	var text bytes.Buffer // wrk's own report: shown only if it fails
	cmd.Stdout, cmd.Stderr = &text, &text
	before, err := hostProc.snapshot()
	if err != nil {
		return err
	}
	runErr := cmd.Run()
	after, err := hostProc.snapshot()
	if err != nil {
		return err
	}
	if runErr != nil {
		return fmt.Errorf("%s: %w\n%s", strings.Join(argv, " "), runErr, text.Bytes())
	}
	load := (cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()).Seconds()
	b, err := os.ReadFile(out.Name())
	if err != nil {
		return err
	}
	var o wrkOut
	if err := json.Unmarshal(b, &o); err != nil {
		return fmt.Errorf("wrk's done() output %q: %w\n%s", b, err, text.Bytes())
	}
	r := c.record()
	r.Tool = "wrk"
	fillWrk(&r, o)
	account(&r, before, after, w, load, c.limits())
	return c.save(r)
}

func fillWrk(r *Record, o wrkOut) {
	r.Seconds = float64(o.DurationUS) / 1e6
	r.Requests, r.Bytes = o.Requests, o.Bytes
	r.P50us, r.P99us = o.LatP50US, o.LatP99US
	errs := map[string]int64{"connect": o.Connect, "read": o.Read, "write": o.Write, "status>=400": o.Status, "timeout": o.Timeout}
	r.Errors, r.ErrorsBy = sumErrors(errs)
}

// sumErrors adds up errs and names the non-zero kinds, sorted.
func sumErrors(errs map[string]int64) (int64, string) {
	var n int64
	var parts []string
	for k, v := range errs {
		if v > 0 {
			n += v
			parts = append(parts, fmt.Sprintf("%s %d", k, v))
		}
	}
	sort.Strings(parts)
	return n, strings.Join(parts, ", ")
}

// appendRecord appends r as one JSON line to path and says what it was.
func appendRecord(path string, r Record) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	b, err := json.Marshal(r)
	if err != nil {
		return err
	}
	f, err := os.OpenFile(path, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		return err
	}
	if _, err := f.Write(append(b, '\n')); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	fmt.Fprintln(os.Stderr, summary(r))
	return nil
}

// summary is one line about r for the run's log.
func summary(r Record) string {
	var b strings.Builder
	fmt.Fprintf(&b, "  %-22s %-8s", r.Figure, r.Target)
	if r.Seconds > 0 {
		fmt.Fprintf(&b, " %9.0f/s", float64(r.Requests)/r.Seconds)
		if r.Bytes > 0 {
			fmt.Fprintf(&b, " %7.1f MB/s", float64(r.Bytes)/r.Seconds/1e6)
		}
	}
	if r.Requests > 0 {
		fmt.Fprintf(&b, "  proxy %6.1f µs/op  backend %6.1f µs/op", 1e6*r.ProxyCPU/float64(r.Requests), 1e6*r.BackendCPU/float64(r.Requests))
	}
	if r.P99us > 0 {
		fmt.Fprintf(&b, "  p50 %.0f µs p99 %.0f µs", r.P50us, r.P99us)
	}
	if r.Conns > 0 {
		fmt.Fprintf(&b, " %d held, RSS %.1f → %.1f MiB, %.1f KiB each, %.1f descriptors each", r.Conns,
			float64(r.RSSBefore)/(1<<20), float64(r.RSSAfter)/(1<<20), float64(r.RSSAfter-r.RSSBefore)/float64(r.Conns)/1024,
			float64(r.FDsAfter-r.FDsBefore)/float64(r.Conns))
	}
	if r.Resumed13 != nil {
		fmt.Fprintf(&b, " TLS 1.3 resumed: %v", *r.Resumed13)
	}
	if r.Resumed12 != nil {
		fmt.Fprintf(&b, ", TLS 1.2 resumed: %v", *r.Resumed12)
	}
	if r.Errors > 0 {
		fmt.Fprintf(&b, "  ERRORS %d (%s)", r.Errors, r.ErrorsBy)
	}
	if r.Disturbed != "" {
		fmt.Fprintf(&b, "  DISTURBED (%s)", r.Disturbed)
	}
	if r.NotComparable != "" {
		fmt.Fprintf(&b, "  NOT COMPARABLE (%s)", r.NotComparable)
	}
	return b.String()
}
