package main

import (
	"fmt"
	"maps"
	"slices"
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

// nodeKeytab is an auth node's file among doctor's: its name, its service
// account and the HTTP principals of its keytab in its realm.
type nodeKeytab struct {
	path, fqdn, realm, account, keytab string
	principals                         map[string]bool // "http/name", lower case
}

// String names the node for doctor's lines: its FQDN and file.
func (k nodeKeytab) String() string { return k.fqdn + " (" + k.path + ")" }

// has says whether the node's keytab holds spn, case aside (AD ignores it).
func (k nodeKeytab) has(spn string) bool { return k.principals[strings.ToLower(spn)] }

// keytabNames checks, across the files given to doctor, that every name a
// browser asks a Kerberos ticket for (config.File.NegotiateNames: the L4
// balancer's names routed to the nodes, the L7 front door's redirect
// targets, the nodes' own names) has its HTTP/<name> principal in the
// keytab of the auth nodes that take it: without it, the ticket cannot be
// read, and browsers that get no ticket fall back to NTLM.
//
// The nodes a name reaches are the auth node files whose authnode.fqdn is
// one of the name's backend FQDNs (an L4 route's pool, a redirect
// target's node, a node's own name): each of them must hold it, since any
// may get the connection, and they must share one service account, since
// an SPN is on one account only. When no file given is one of those nodes
// (backends without fqdn, or their files not given), some auth node's
// keytab among the files must hold it. A wildcard L4 name is a warning: no
// keytab can be checked for the names under it. Files that do not load
// are left out: their own lines say why.
func keytabNames(paths []string) []doctorLine {
	var nodes []nodeKeytab
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
		k := nodeKeytab{path: p, fqdn: cfg.FQDN, realm: cfg.Realm, account: cfg.Account, keytab: cfg.Keytab, principals: map[string]bool{}}
		for _, e := range cfg.Files.Keytab.Entries {
			if strings.EqualFold(e.Principal.Realm, cfg.Realm) {
				k.principals[strings.ToLower(strings.Join(e.Principal.Components, "/"))] = true
			}
		}
		nodes = append(nodes, k)
	}
	if len(names) == 0 {
		return nil
	}
	if len(nodes) == 0 {
		return []doctorLine{{Check: "keytab names", Status: "warning",
			Message: fmt.Sprintf("%d names are served, but no auth node's file was given: they cannot be checked against a keytab", len(names)),
			Fix:     "give the auth nodes' files too: iwalb doctor -config l4.yaml -config l7redirect.yaml -config authnode.yaml"}}
	}
	var out []doctorLine
	for _, n := range names {
		spn := "HTTP/" + n.Name
		where := fmt.Sprintf("served by %s (%s)", n.Via, n.path)
		l := doctorLine{Check: "keytab names", Subject: spn, Status: "ok"}
		if strings.HasPrefix(n.Name, "*.") {
			l.Status = "warning"
			l.Message = where + ": browsers ask a ticket for each name under it, and no SPN matches a wildcard; those names cannot be checked here"
			l.Fix = fmt.Sprintf("register HTTP/<name> for each name used under %s and export the keytab again, or route the exact names", n.Name)
			out = append(out, l)
			continue
		}
		var takers []nodeKeytab
		var notGiven []string
		for _, b := range n.Backends {
			if i := slices.IndexFunc(nodes, func(k nodeKeytab) bool { return strings.EqualFold(k.fqdn, b) }); i >= 0 {
				takers = append(takers, nodes[i])
			} else {
				notGiven = append(notGiven, b)
			}
		}
		if len(takers) == 0 {
			// No file given is a node it reaches (as far as the files
			// say): some auth node's keytab must hold it.
			for _, k := range nodes {
				if k.has(spn) {
					l.Message = fmt.Sprintf("%s; in the keytab of %s (no file given is a node it reaches)", where, k.path)
					break
				}
			}
			if l.Message == "" {
				l.Status, l.Fix = "problem", addSPNFix(spn, nodes[0])
				l.Message = where + ", but no auth node's keytab holds it: browsers get a ticket the nodes cannot read, or none and fall back to NTLM"
			}
			out = append(out, l)
			continue
		}
		var lacking []nodeKeytab
		var lackingNodes, holdingNodes []string
		accounts := map[string]bool{}
		for _, k := range takers {
			accounts[strings.ToLower(k.account)] = true
			if k.has(spn) {
				holdingNodes = append(holdingNodes, k.String())
			} else {
				lacking = append(lacking, k)
				lackingNodes = append(lackingNodes, k.String())
			}
		}
		switch {
		case len(lacking) > 0:
			l.Status, l.Fix = "problem", addSPNFix(spn, lacking[0])
			l.Message = fmt.Sprintf("%s, but the keytab of %s, a node it reaches, does not hold it: browsers get a ticket the node cannot read, or none and fall back to NTLM", where, strings.Join(lackingNodes, ", "))
		case len(accounts) > 1:
			l.Status = "problem"
			l.Message = fmt.Sprintf("%s, reaches nodes of different service accounts (%s): an SPN is on one account, so the nodes of the others cannot read its tickets", where, strings.Join(slices.Sorted(maps.Keys(accounts)), ", "))
			l.Fix = "give the nodes behind one name the same kerberos.account and keytab"
		case len(takers) == 1 && takers[0].path == n.path:
			l.Message = where + "; in its own keytab"
		default:
			l.Message = fmt.Sprintf("%s; in the keytab of each node it reaches: %s", where, strings.Join(holdingNodes, ", "))
		}
		if len(notGiven) > 0 {
			l.Message += "; not checked, their files not given: " + strings.Join(notGiven, ", ")
		}
		out = append(out, l)
	}
	return out
}

// addSPNFix says how to put spn on k's service account and in its keytab.
func addSPNFix(spn string, k nodeKeytab) string {
	return fmt.Sprintf("register it on the service account and export the keytab again: samba-tool spn add %s %s; samba-tool domain exportkeytab %s --principal=%s@%s (Windows: setspn -S %s %s; ktpass -princ %s@%s -mapuser %s -out %s ...), then iwalb reload on each node",
		spn, k.account, k.keytab, spn, k.realm, spn, k.account, spn, k.realm, k.account, k.keytab)
}
