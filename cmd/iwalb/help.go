package main

import (
	"bytes"
	"flag"
	"fmt"
	"io"
	"strings"
)

// commandDoc documents one command: `iwalb help COMMAND`, `iwalb COMMAND
// -h` and the man page (`iwalb help -man`) are all made from it and from
// the command's own flag set.
type commandDoc struct {
	name, synopsis, text string
}

var commandDocs = []commandDoc{
	{"run", "iwalb run -config FILE",
		"Starts the roles FILE configures (auth node, pools, L4 balancer, L7 front doors): every listener is bound before any role starts, or none is. SIGHUP (and iwalb reload) loads FILE again; a file that does not load keeps the running configuration. SIGINT or SIGTERM drains and stops; a second one stops at once. Exit 2 when FILE is refused at start, 1 when a role fails."},
	{"check", "iwalb check -config FILE",
		"Validates FILE and builds what run would from it, binding and dialing nothing: one FILE:LINE: reason line per problem, warnings (a secret file open to others) included. Exit 1 on a problem."},
	{"reload", "iwalb reload -config FILE",
		"Asks the iwalb running FILE to load it again, through its admin listener, and prints the outcome. Exit 1 when the reload was refused or the process cannot be reached."},
	{"keytab", "iwalb keytab [-json] FILE",
		"Lists a keytab's key versions, timestamps, principals and enctypes, as klist -kte does, never a key, and what is wrong with each principal at its newest key version, with the fix. Exit 1 on a problem."},
	{"doctor", "iwalb doctor [-json] -config FILE [-config FILE ...]",
		"Checks each FILE, then what the machine and the domain say: certificates (expiry, chain), the names served (DNS, no CNAME), the browser settings they need, each keytab principal, and for an auth node its LDAP bind, clock, KDC self-test, SPNs and service account in AD, NTLM through ntlm_auth, and Redis. Across the files: every name a browser asks a ticket for (the L4 balancer's, the front door's redirect targets, the nodes' own) has its HTTP/ principal in the keytab of each node it reaches (the auth node files whose fqdn is a backend of its pool; any auth node's when none is), and those nodes share one service account. Each failure with its fix. Exit 1 on a problem."},
	{"version", "iwalb version",
		"Prints the version, the build date, the VCS revision and the Go version."},
	{"help", "iwalb help [COMMAND | -man]",
		"Prints the usage, one command's help, or the manual page (roff)."},
}

// exitCodes documents the exit status of every command.
const exitCodes = `Exit status:
  0  success
  1  a problem found (check, keytab, doctor), a refused reload, or a role that failed
  2  the command line is wrong, or run refused the configuration file (nothing started)
`

// commandFlags returns the flag set of cmd, with the flags it takes; the
// commands parse their arguments with it, and help prints it.
func commandFlags(cmd string, out io.Writer) (fs *flag.FlagSet, config *string, asJSON *bool) {
	fs = flag.NewFlagSet("iwalb "+cmd, flag.ContinueOnError)
	fs.SetOutput(out)
	switch cmd {
	case "run", "check", "reload":
		config = fs.String("config", "", "the configuration `FILE` (YAML)")
	case "keytab":
		asJSON = fs.Bool("json", false, "print the entries and findings as JSON")
	case "doctor":
		fs.Var(&pathList{}, "config", "a configuration `FILE` (YAML); repeat it to check several together: the names the L4 balancer and the L7 front door serve against the auth nodes' keytabs")
		asJSON = fs.Bool("json", false, "print the results as JSON")
	}
	fs.Usage = func() { writeCommandHelp(out, cmd) }
	return fs, config, asJSON
}

func docOf(cmd string) (commandDoc, bool) {
	for _, d := range commandDocs {
		if d.name == cmd {
			return d, true
		}
	}
	return commandDoc{}, false
}

// writeCommandHelp prints cmd's synopsis, what it does, its flags and the
// exit codes.
func writeCommandHelp(w io.Writer, cmd string) {
	d, ok := docOf(cmd)
	if !ok {
		fmt.Fprint(w, usage)
		return
	}
	fmt.Fprintf(w, "usage: %s\n\n%s\n", d.synopsis, wrap(d.text, 76, ""))
	if flags := flagText(cmd); flags != "" {
		fmt.Fprintf(w, "\nFlags:\n%s", flags)
	}
	fmt.Fprintf(w, "\n%s", exitCodes)
}

// flagText is PrintDefaults of cmd's flags.
func flagText(cmd string) string {
	var b bytes.Buffer
	fs, _, _ := commandFlags(cmd, &b)
	fs.PrintDefaults()
	return b.String()
}

// helpCmd is `iwalb help [COMMAND | -man]`.
func helpCmd(args []string, stdout, stderr io.Writer) int {
	switch {
	case len(args) == 0:
		fmt.Fprint(stdout, usage)
		fmt.Fprintf(stdout, "\n%s", exitCodes)
		return exitOK
	case len(args) == 1 && args[0] == "-man":
		writeManPage(stdout)
		return exitOK
	case len(args) == 1:
		if _, ok := docOf(args[0]); ok {
			writeCommandHelp(stdout, args[0])
			return exitOK
		}
	}
	fmt.Fprintf(stderr, "iwalb help: no command %q\n\n%s", strings.Join(args, " "), usage)
	return exitUsage
}

// writeManPage writes iwalb(1) in roff, from the same text as the help.
func writeManPage(w io.Writer) {
	esc := func(s string) string {
		s = strings.ReplaceAll(s, `\`, `\e`)
		s = strings.ReplaceAll(s, "-", `\-`)
		if strings.HasPrefix(s, ".") || strings.HasPrefix(s, "'") {
			s = `\&` + s
		}
		return s
	}
	fmt.Fprintf(w, ".TH IWALB 1 \"\" \"iwalb %s\" \"User Commands\"\n", esc(version))
	fmt.Fprint(w, ".SH NAME\niwalb \\- Windows sign-on load balancer and auth node\n")
	fmt.Fprint(w, ".SH SYNOPSIS\n")
	for _, d := range commandDocs {
		fmt.Fprintf(w, ".B %s\n.br\n", esc(d.synopsis))
	}
	fmt.Fprint(w, ".SH DESCRIPTION\n"+esc("One binary runs the L4 TLS-passthrough balancer routed by SNI, the L7 front door that redirects browsers to healthy auth nodes, and the auth node that signs users in with Kerberos (SPNEGO) and Active Directory, from one YAML file.")+"\n")
	fmt.Fprint(w, ".SH COMMANDS\n")
	for _, d := range commandDocs {
		fmt.Fprintf(w, ".TP\n.B %s\n%s\n", esc(d.synopsis), esc(d.text))
		for _, line := range strings.Split(strings.TrimRight(flagText(d.name), "\n"), "\n") {
			if line = strings.TrimSpace(line); line != "" {
				fmt.Fprintf(w, ".br\n%s\n", esc(line))
			}
		}
	}
	fmt.Fprint(w, ".SH EXIT STATUS\n")
	for _, line := range strings.Split(strings.TrimSpace(exitCodes), "\n")[1:] {
		code, text, _ := strings.Cut(strings.TrimSpace(line), "  ")
		fmt.Fprintf(w, ".TP\n.B %s\n%s\n", code, esc(strings.TrimSpace(text)))
	}
	fmt.Fprint(w, ".SH FILES\n.TP\n.I /etc/iwalb/iwalb.yaml\nthe configuration the systemd unit runs (iwalb.service)\n")
	fmt.Fprint(w, ".SH SEE ALSO\n.BR klist (1),\n.BR kinit (1),\n.BR systemctl (1)\n")
}

// wrap folds text at width, each line after the first starting with
// indent.
func wrap(text string, width int, indent string) string {
	var b strings.Builder
	n := 0
	for i, word := range strings.Fields(text) {
		switch {
		case i == 0:
		case n+1+len(word) > width:
			b.WriteString("\n" + indent)
			n = len(indent)
		default:
			b.WriteByte(' ')
			n++
		}
		b.WriteString(word)
		n += len(word)
	}
	return b.String()
}
