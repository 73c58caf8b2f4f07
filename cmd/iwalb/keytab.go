package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"text/tabwriter"
	"time"

	"github.com/iwalb/iwalb/authnode/negotiate"
)

// maxKeytabBytes bounds the file `iwalb keytab` reads: a keytab of a few
// accounts is a few KiB.
const maxKeytabBytes = 1 << 20

// keytabCmd is `iwalb keytab [-json] FILE`: the keytab's principals, key
// versions and enctypes, as `klist -kte` lists them but never a key, and
// what is wrong with them (InspectKeytab). It exits 1 when a finding is a
// problem or the file cannot be read.
func keytabCmd(args []string, stdout, stderr io.Writer) int {
	fs, _, asJSON := commandFlags("keytab", stderr)
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return exitOK
		}
		return exitUsage
	}
	if fs.NArg() != 1 {
		fmt.Fprintf(stderr, "iwalb keytab: want one keytab FILE\n\n%s", usage)
		return exitUsage
	}
	path := fs.Arg(0)
	keys, err := readKeytabSummary(path)
	if err != nil {
		fmt.Fprintf(stderr, "iwalb keytab: %v\n", err)
		return exitFailed
	}
	findings := negotiate.InspectKeytab(keys)
	code := exitOK
	for _, f := range findings {
		if f.Severity == negotiate.Problem {
			code = exitFailed
		}
	}
	if *asJSON {
		type entry struct {
			Principal string    `json:"principal"`
			KVNO      int       `json:"kvno"`
			Enctype   string    `json:"enctype"`
			EtypeID   int32     `json:"enctypeId"`
			Timestamp time.Time `json:"timestamp"`
		}
		out := struct {
			File     string              `json:"file"`
			Entries  []entry             `json:"entries"`
			Findings []negotiate.Finding `json:"findings"`
		}{File: path, Entries: []entry{}, Findings: findings}
		for _, k := range keys {
			out.Entries = append(out.Entries, entry{k.Principal + "@" + k.Realm, k.KVNO, k.EtypeName, k.Etype, k.Timestamp.UTC()})
		}
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(out); err != nil {
			fmt.Fprintf(stderr, "iwalb keytab: %v\n", err)
			return exitFailed
		}
		return code
	}
	fmt.Fprintf(stdout, "Keytab: %s\n", path)
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "KVNO\tTIMESTAMP\tPRINCIPAL\tENCTYPE")
	for _, k := range keys {
		fmt.Fprintf(tw, "%d\t%s\t%s@%s\t%s\n", k.KVNO, k.Timestamp.UTC().Format("2006-01-02 15:04:05"), k.Principal, k.Realm, k.EtypeName)
	}
	tw.Flush()
	fmt.Fprintln(stdout)
	for _, f := range findings {
		mark := map[negotiate.Severity]string{negotiate.OK: "✔", negotiate.Warning: "!", negotiate.Problem: "✘"}[f.Severity]
		who := f.Principal
		if who == "" {
			who = path
		}
		fmt.Fprintf(stdout, "%s %s: %s\n", mark, who, f.Message)
		if f.Fix != "" {
			fmt.Fprintf(stdout, "    fix: %s\n", f.Fix)
		}
	}
	return code
}

// readKeytabSummary reads at most maxKeytabBytes of path and lists its
// entries without their keys.
func readKeytabSummary(path string) ([]negotiate.KeyInfo, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxKeytabBytes+1))
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	if len(data) > maxKeytabBytes {
		return nil, fmt.Errorf("%s: larger than %d KiB, which no keytab is", path, maxKeytabBytes>>10)
	}
	kt, err := negotiate.ParseKeytab(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return negotiate.Summarize(kt), nil
}
