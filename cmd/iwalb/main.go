// Command iwalb runs the roles of one iwalb appliance (auth node, pools,
// L4 balancer, L7 front door) from one YAML file.
//
//	iwalb check  -config /etc/iwalb/iwalb.yaml  # FILE:LINE: reason per problem
//	iwalb run    -config /etc/iwalb/iwalb.yaml  # until SIGINT or SIGTERM; SIGHUP reloads
//	iwalb reload -config /etc/iwalb/iwalb.yaml  # a running process reloads, over its admin API
//	iwalb keytab /etc/iwalb/http.keytab         # principals, KVNO, enctypes; what is wrong
//	iwalb doctor -config /etc/iwalb/iwalb.yaml  # check, then the keytab, certificates, LDAP, clock and KDC
//	iwalb version
//
// It owns the process: flags, signals, logging, the metrics listener and
// the lifetime of the roles. What each role does lives in its own package.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime"
	"runtime/debug"
	"syscall"

	"github.com/iwalb/iwalb/cmd/iwalb/internal/config"
	"github.com/prometheus/client_golang/prometheus"
)

// version and buildDate are set at build time with -ldflags
// "-X main.version=1.2.3 -X main.buildDate=2026-12-04T01:00:00Z"
// (scripts/package does).
var (
	version   = "dev"
	buildDate = ""
)

const usage = `usage:
  iwalb run -config FILE      start the roles configured in FILE; stop on SIGINT or SIGTERM,
                              load FILE again on SIGHUP
  iwalb check -config FILE    print each problem in FILE as FILE:LINE: reason
  iwalb reload -config FILE   ask the iwalb running FILE to load it again (through its admin API)
                              and print the outcome
  iwalb keytab [-json] FILE   list a keytab's principals, key versions and enctypes (never a key)
                              and what is wrong with them; exit 1 on a problem
  iwalb doctor [-json] -config FILE
                              check FILE, then what the environment says: keytab principals,
                              certificates near expiry and, for an auth node, the LDAP bind, the
                              clock against the DC's and the KDC self-test; each failure with its
                              fix; exit 1 on a problem
  iwalb version               print the version
  iwalb help [COMMAND | -man] one command's flags and exit codes, or the manual page
`

// Exit codes.
const (
	exitOK = 0
	// exitFailed: check found problems, or a role could not start or failed.
	exitFailed = 1
	// exitUsage: the command line is wrong.
	exitUsage = 2
	// exitInvalid: run refused the configuration file; nothing started.
	exitInvalid = 2
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// run is the whole command, minus os.Exit, so that tests can call it.
func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return exitUsage
	}
	cmd, args := args[0], args[1:]
	switch cmd {
	case "run":
		path, code, ok := configFlag(cmd, args, stderr)
		if !ok {
			return code
		}
		ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
		defer stop()
		// After the first signal, a second one kills the process at once,
		// in case a graceful shutdown hangs.
		context.AfterFunc(ctx, stop)
		hup := make(chan os.Signal, 1)
		signal.Notify(hup, syscall.SIGHUP)
		defer signal.Stop(hup)
		return serve(ctx, path, reloadSignals(ctx, hup), stderr)
	case "reload":
		path, code, ok := configFlag(cmd, args, stderr)
		if !ok {
			return code
		}
		return askReload(path, stdout, stderr)
	case "check":
		path, code, ok := configFlag(cmd, args, stderr)
		if !ok {
			return code
		}
		return check(path, stdout)
	case "keytab":
		return keytabCmd(args, stdout, stderr)
	case "doctor":
		return doctorCmd(args, stdout, stderr)
	case "version":
		if len(args) > 0 {
			fmt.Fprintf(stderr, "iwalb version: unexpected argument %q\n\n%s", args[0], usage)
			return exitUsage
		}
		printVersion(stdout)
		return exitOK
	case "help":
		return helpCmd(args, stdout, stderr)
	case "-h", "-help", "--help":
		return helpCmd(nil, stdout, stderr)
	default:
		fmt.Fprintf(stderr, "iwalb: unknown command %q\n\n%s", cmd, usage)
		return exitUsage
	}
}

// configFlag parses the flags of run and check; ok is false when the
// command must stop with code.
func configFlag(cmd string, args []string, stderr io.Writer) (path string, code int, ok bool) {
	fs, config, _ := commandFlags(cmd, stderr)
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return "", exitOK, false
		}
		return "", exitUsage, false
	}
	switch {
	case fs.NArg() > 0:
		fmt.Fprintf(stderr, "iwalb %s: unexpected argument %q\n\n%s", cmd, fs.Arg(0), usage)
		return "", exitUsage, false
	case *config == "":
		fmt.Fprintf(stderr, "iwalb %s: missing -config FILE\n\n%s", cmd, usage)
		return "", exitUsage, false
	}
	return *config, 0, true
}

// check loads the file and reports on stdout, as an editor or CI job
// wants it.
// It loads the file and builds what run would build from it (pools,
// servers, handlers, the auth node's keys and clients), binding and
// dialing nothing. Warnings (a key file open to others) are printed but do
// not fail the check, since the file may be checked on another machine
// than the one that runs it; run refuses them.
func check(path string, stdout io.Writer) int {
	f, err := config.Load(path)
	if err != nil {
		fmt.Fprintln(stdout, err)
		return exitFailed
	}
	if w := f.Warnings(); len(w) > 0 {
		fmt.Fprintln(stdout, w)
	}
	p := newProcess(path, f, io.Discard)
	if _, err := p.build(f); err != nil {
		fmt.Fprintf(stdout, "%s: %v\n", path, err)
		return exitFailed
	}
	fmt.Fprintf(stdout, "%s: ok\n", path)
	return exitOK
}

// buildInfo is the iwalb_build_info gauge: 1, with the version, the VCS
// revision the binary was built from and the Go version as labels.
func buildInfo() prometheus.Collector {
	g := prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "iwalb_build_info",
		Help: "Always 1; the labels say which iwalb runs: version, revision (VCS, empty if unknown) and goversion.",
		ConstLabels: prometheus.Labels{
			"version": version, "revision": revision(), "goversion": runtime.Version(),
		},
	})
	g.Set(1)
	return g
}

// revision is the VCS revision Go recorded at build time, with "-modified"
// for a tree with uncommitted changes, or "".
func revision() string {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return ""
	}
	var rev, modified string
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.modified":
			if s.Value == "true" {
				modified = "-modified"
			}
		}
	}
	if rev == "" {
		return ""
	}
	return rev + modified
}

// printVersion prints the version given at build time, what the Go
// toolchain recorded about the module and its VCS revision, and the Go
// version.
func printVersion(w io.Writer) {
	fmt.Fprintf(w, "iwalb %s\n", version)
	if buildDate != "" {
		fmt.Fprintf(w, "built %s\n", buildDate)
	}
	if bi, ok := debug.ReadBuildInfo(); ok {
		if bi.Main.Path != "" {
			fmt.Fprintf(w, "module %s %s\n", bi.Main.Path, bi.Main.Version)
		}
		var rev, at, modified string
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				rev = s.Value
			case "vcs.time":
				at = s.Value
			case "vcs.modified":
				if s.Value == "true" {
					modified = " (modified)"
				}
			}
		}
		if rev != "" {
			fmt.Fprintf(w, "revision %s %s%s\n", rev, at, modified)
		}
	}
	fmt.Fprintf(w, "go %s %s/%s\n", runtime.Version(), runtime.GOOS, runtime.GOARCH)
}

// reloadSignals turns SIGHUPs into reload requests until ctx ends. Signals
// that arrive while a reload is pending are one reload.
func reloadSignals(ctx context.Context, hup <-chan os.Signal) <-chan struct{} {
	out := make(chan struct{}, 1)
	go func() {
		for {
			select {
			case <-ctx.Done():
				return
			case <-hup:
				select {
				case out <- struct{}{}:
				default:
				}
			}
		}
	}()
	return out
}
