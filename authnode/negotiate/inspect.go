package negotiate

import (
	"fmt"
	"slices"
	"strings"
)

// Severity says how bad a Finding is.
type Severity string

const (
	// Problem: tickets will fail, or a key is unsafe to serve with.
	Problem Severity = "problem"
	// Warning: works, but should be fixed.
	Warning Severity = "warning"
	// OK: a principal that passed every check.
	OK Severity = "ok"
)

// Finding is one result of InspectKeytab: about one principal, or the
// whole keytab when Principal is "".
type Finding struct {
	Severity  Severity `json:"severity"`
	Principal string   `json:"principal,omitempty"` // "HTTP/host@REALM"
	Message   string   `json:"message"`
	Fix       string   `json:"fix,omitempty"` // what to run, when there is one thing
}

// weak enctypes: DES, 3DES and RC4, which current Windows and browsers
// refuse or are told to refuse.
func weakEtype(etype int32) bool {
	switch etype {
	case 1, 3, 16, 23, 24:
		return true
	}
	return false
}

const aes256 = 18

// InspectKeytab checks a keytab's entries (from Summarize) the way the
// auth node will use them. For each principal, at its newest key version
// (older versions are a rotation's leftovers): an AES256 key, since
// Windows asks for AES256 tickets for accounts that allow it and an
// RC4-only account is refused by current domains; no weak key beside it;
// the service name HTTP in upper case and the realm in upper case, since
// the node looks keys up by the exact name in the ticket, which browsers
// spell that way. A principal that passes gets an OK finding.
func InspectKeytab(ks []KeyInfo) []Finding {
	if len(ks) == 0 {
		return []Finding{{Severity: Problem, Message: "the keytab holds no keys",
			Fix: "samba-tool domain exportkeytab FILE --principal=HTTP/<fqdn>, or ktpass on Windows"}}
	}
	type key struct{ principal, realm string }
	newest := map[key]int{}
	var order []key
	for _, k := range ks {
		id := key{k.Principal, k.Realm}
		v, seen := newest[id]
		if !seen {
			order = append(order, id)
		}
		if !seen || k.KVNO > v {
			newest[id] = k.KVNO
		}
	}
	var out []Finding
	for _, id := range order {
		name := id.principal + "@" + id.realm
		kvno := newest[id]
		var etypes []int32
		for _, k := range ks {
			if k.Principal == id.principal && k.Realm == id.realm && k.KVNO == kvno {
				etypes = append(etypes, k.Etype)
			}
		}
		before := len(out)
		add := func(sev Severity, fix, format string, args ...any) {
			out = append(out, Finding{Severity: sev, Principal: name, Message: fmt.Sprintf(format, args...), Fix: fix})
		}
		account := "<service account>"
		if !slices.Contains(etypes, aes256) {
			var weak, names []string
			for _, e := range etypes {
				names = append(names, EtypeName(e))
				if weakEtype(e) {
					weak = append(weak, EtypeName(e))
				}
			}
			what := "no aes256-cts-hmac-sha1-96 key"
			if len(weak) == len(etypes) {
				what = "only weak keys (" + strings.Join(names, ", ") + ")"
			}
			add(Problem, fmt.Sprintf("allow AES on the account (msDS-SupportedEncryptionTypes = 24: samba-tool user edit, or Set-ADUser %s -KerberosEncryptionType AES128,AES256), reset its password, and export the keytab again", account),
				"%s at kvno %d: browsers ask for AES256 tickets, which this keytab cannot decrypt", what, kvno)
		} else {
			var weak []string
			for _, e := range etypes {
				if weakEtype(e) {
					weak = append(weak, EtypeName(e))
				}
			}
			if len(weak) > 0 {
				add(Warning, "export the keytab with AES keys only (ktpass -crypto AES256-SHA1, or samba-tool domain exportkeytab after limiting msDS-SupportedEncryptionTypes)",
					"also holds weak keys (%s) at kvno %d; remove them once no client needs them", strings.Join(weak, ", "), kvno)
			}
		}
		service, host, hasHost := strings.Cut(id.principal, "/")
		if hasHost && service != "HTTP" && strings.EqualFold(service, "HTTP") {
			add(Problem, "setspn -S HTTP/"+host+" "+account+", then export the keytab again",
				"the service is %q: browsers ask for HTTP/%s, and keys are found by the exact name", service, host)
		}
		if hasHost && host != strings.ToLower(host) {
			add(Warning, "", "the host %q has upper-case letters; browsers ask for the lower-case name %q", host, strings.ToLower(host))
		}
		if id.realm != strings.ToUpper(id.realm) {
			add(Problem, "", "the realm %q is not upper case; an AD realm is its DNS domain in upper case (%s)", id.realm, strings.ToUpper(id.realm))
		}
		if len(out) == before {
			var names []string
			for _, e := range etypes {
				names = append(names, EtypeName(e))
			}
			add(OK, "", "kvno %d: %s", kvno, strings.Join(names, ", "))
		}
	}
	return out
}
