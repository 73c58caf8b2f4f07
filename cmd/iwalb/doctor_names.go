package main

import (
	"fmt"
	"strings"

	"github.com/iwalb/iwalb/cmd/iwalb/internal/config"
)

// pathList is a flag that may be given several times: doctor's -config.
type pathList []string

func (p *pathList) String() string { return strings.Join(*p, ",") }

func (p *pathList) Set(v string) error {
	*p = append(*p, v)
	return nil
}

// keytabNames checks, across the files given to doctor, that every name a
// browser asks a Kerberos ticket for (config.File.NegotiateNames: the L4
// balancer's names routed to the nodes, the L7 front door's redirect
// targets, the nodes' own names) has its HTTP/<name> principal in the
// keytab of an auth node among the files: without it, the ticket cannot
// be read, and browsers that get no ticket fall back to NTLM. Files that
// do not load are left out: their own lines say why.
func keytabNames(paths []string) []doctorLine {
	type keytabOf struct {
		path, realm, account string
		principals           map[string]bool // "HTTP/name", lower case
	}
	var keytabs []keytabOf
	type served struct {
		config.NegotiateName
		path string
	}
	var names []served
	for _, p := range paths {
		f, err := config.Load(p)
		if err != nil {
			continue
		}
		for _, n := range f.NegotiateNames() {
			names = append(names, served{n, p})
		}
		cfg, ok := f.AuthNode()
		if !ok || cfg.Files == nil || cfg.Files.Keytab == nil {
			continue
		}
		k := keytabOf{path: p, realm: cfg.Realm, account: cfg.Account, principals: map[string]bool{}}
		for _, e := range cfg.Files.Keytab.Entries {
			if strings.EqualFold(e.Principal.Realm, cfg.Realm) {
				k.principals[strings.ToLower(strings.Join(e.Principal.Components, "/"))] = true
			}
		}
		keytabs = append(keytabs, k)
	}
	if len(names) == 0 {
		return nil
	}
	if len(keytabs) == 0 {
		return []doctorLine{{Check: "keytab names", Status: "warning",
			Message: fmt.Sprintf("%d names are served, but no auth node's file was given: they cannot be checked against a keytab", len(names)),
			Fix:     "give the auth nodes' files too: iwalb doctor -config l4.yaml -config authnode.yaml"}}
	}
	var out []doctorLine
	for _, n := range names {
		spn := "HTTP/" + n.Name
		l := doctorLine{Check: "keytab names", Subject: spn, Status: "ok"}
		var in []string
		for _, k := range keytabs {
			if k.principals[strings.ToLower(spn)] {
				in = append(in, k.path)
			}
		}
		if len(in) > 0 {
			l.Message = fmt.Sprintf("served by %s (%s); in the keytab of %s", n.Via, n.path, strings.Join(in, ", "))
		} else {
			k := keytabs[0]
			l.Status = "problem"
			l.Message = fmt.Sprintf("served by %s (%s), but no auth node's keytab holds it: browsers get a ticket the nodes cannot read, or none and fall back to NTLM", n.Via, n.path)
			l.Fix = fmt.Sprintf("register it on the service account and export the keytab again: samba-tool spn add %s %s; samba-tool domain exportkeytab KEYTAB --principal=%s@%s (Windows: setspn -S %s %s; ktpass -princ %s@%s -mapuser %s ...), then iwalb reload on each node",
				spn, k.account, spn, k.realm, spn, k.account, spn, k.realm, k.account)
		}
		out = append(out, l)
	}
	return out
}
