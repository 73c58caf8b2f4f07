package main

import (
	"context"
	"crypto/x509"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"time"

	"github.com/iwalb/iwalb/authnode"
	"github.com/iwalb/iwalb/authnode/directory"
	"github.com/iwalb/iwalb/authnode/negotiate"
	"github.com/iwalb/iwalb/cmd/iwalb/internal/config"
)

// certWarnBefore is how long before its expiry a certificate is reported.
const certWarnBefore = 30 * 24 * time.Hour

// doctorLine is one result of `iwalb doctor`.
type doctorLine struct {
	// File is the configuration file the line is about, when doctor was
	// given several; empty for a line across them.
	File    string `json:"file,omitempty"`
	Check   string `json:"check"`
	Status  string `json:"status"` // ok, warning, problem
	Subject string `json:"subject,omitempty"`
	Message string `json:"message"`
	Fix     string `json:"fix,omitempty"`
}

// doctorCmd is `iwalb doctor -config FILE [-json]`: what `iwalb check`
// checks, then what only the running environment can say: each keytab
// principal at its newest key version (InspectKeytab), certificates close
// to expiry, and, for an auth node, its readiness checks made now against
// the domain (the LDAP proxy bind, the clock against the DC's, and the KDC
// self-test: a ticket for the node's SPN, decrypted with the keytab). Each
// failure says what fixes it. It exits 1 when anything is a problem.
func doctorCmd(args []string, stdout, stderr io.Writer) int {
	fs, _, asJSON := commandFlags("doctor", stderr)
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return exitOK
		}
		return exitUsage
	}
	paths := *fs.Lookup("config").Value.(*pathList)
	if len(paths) == 0 || fs.NArg() > 0 {
		fmt.Fprintf(stderr, "iwalb doctor: want -config FILE (repeated for several) and nothing else\n\n%s", usage)
		return exitUsage
	}
	var lines []doctorLine
	for _, p := range paths {
		for _, l := range doctor(context.Background(), p, time.Now(), net.DefaultResolver) {
			if len(paths) > 1 {
				l.File = p
			}
			lines = append(lines, l)
		}
	}
	lines = append(lines, keytabNames(paths)...)
	code := exitOK
	for _, l := range lines {
		if l.Status == "problem" {
			code = exitFailed
		}
	}
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(lines); err != nil {
			fmt.Fprintf(stderr, "iwalb doctor: %v\n", err)
			return exitFailed
		}
		return code
	}
	marks := map[string]string{"ok": "✔", "warning": "!", "problem": "✘"}
	file := ""
	for i, l := range lines {
		if len(paths) > 1 && (i == 0 || l.File != file) {
			// Each file's lines under its name, then those across them.
			file = l.File
			heading := file
			if heading == "" {
				heading = "across the files"
			}
			fmt.Fprintf(stdout, "== %s\n", heading)
		}
		subject := ""
		if l.Subject != "" {
			subject = " " + l.Subject
		}
		fmt.Fprintf(stdout, "%s %s%s: %s\n", marks[l.Status], l.Check, subject, l.Message)
		if l.Fix != "" {
			fmt.Fprintf(stdout, "    fix: %s\n", l.Fix)
		}
	}
	return code
}

// doctor runs the checks of the file at path; names are resolved with r.
func doctor(ctx context.Context, path string, now time.Time, r *net.Resolver) []doctorLine {
	f, err := config.Load(path)
	if err != nil {
		fix := "iwalb check -config " + path + " names each problem at its line"
		if strings.Contains(err.Error(), "the certificate expired on") {
			fix = "renew the expired certificate, replace its files, then iwalb reload; " + fix
		}
		return []doctorLine{{Check: "config", Status: "problem", Message: err.Error(), Fix: fix}}
	}
	lines := []doctorLine{{Check: "config", Status: "ok", Message: path + " is valid"}}
	for _, w := range f.Warnings() {
		lines = append(lines, doctorLine{Check: "config", Status: "warning", Message: w.String()})
	}
	roots, _ := x509.SystemCertPool() // nil: none, and every chain is reported
	for _, c := range f.Certificates() {
		l := doctorLine{Check: "certificate", Subject: c.Server + " " + c.Name, Status: "ok",
			Message: "valid until " + c.NotAfter.UTC().Format(time.DateOnly)}
		if left := c.NotAfter.Sub(now); left < certWarnBefore {
			l.Status, l.Message = "warning", fmt.Sprintf("expires on %s, in %d days", c.NotAfter.UTC().Format(time.DateOnly), int(left.Hours()/24))
			l.Fix = "renew it, replace the files and run iwalb reload"
		}
		lines = append(lines, l, certChain(c, roots))
	}
	lines = append(lines, browserPolicy(f.ServedNames())...)
	lines = append(lines, resolveNames(ctx, r, f.ServedNames())...)
	cfg, ok := f.AuthNode()
	if !ok {
		return lines
	}
	if cfg.Files != nil && cfg.Files.Keytab != nil {
		for _, k := range negotiate.InspectKeytab(negotiate.Summarize(cfg.Files.Keytab)) {
			status := map[negotiate.Severity]string{negotiate.OK: "ok", negotiate.Warning: "warning", negotiate.Problem: "problem"}[k.Severity]
			lines = append(lines, doctorLine{Check: "keytab", Subject: k.Principal, Status: status, Message: k.Message, Fix: k.Fix})
		}
	}
	node, err := authnode.New(cfg, authnode.Options{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		return append(lines, doctorLine{Check: "authnode", Status: "problem", Message: err.Error()})
	}
	ctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	for _, c := range node.Diagnose(ctx) {
		l := doctorLine{Check: c.Name, Status: "ok", Message: c.Detail}
		switch {
		case c.Err != nil:
			l.Status, l.Fix = "problem", doctorFix(c.Name, c.Err, cfg)
		case c.Warning:
			l.Status = "warning"
			l.Fix = fmt.Sprintf("set \"password never expires\" on %s (userAccountControl DONT_EXPIRE_PASSWORD), or export the keytab again at each password change", cfg.Account)
		}
		lines = append(lines, l)
	}
	return lines
}

// browserPolicy says what browsers must be told to offer Kerberos to the
// names served: Chrome's and Edge's AuthServerAllowlist, Firefox's
// network.negotiate-auth.trusted-uris, and Windows' Local intranet zone.
func browserPolicy(names []string) []doctorLine {
	if len(names) == 0 {
		return nil
	}
	var chrome, firefox, zone []string
	for _, n := range names {
		chrome = append(chrome, n)
		if d, ok := strings.CutPrefix(n, "*."); ok {
			firefox = append(firefox, "."+d)
			zone = append(zone, "https://*."+d)
		} else {
			firefox = append(firefox, "https://"+n)
			zone = append(zone, "https://"+n)
		}
	}
	const why = "browsers offer Kerberos only to the sites they are told to"
	return []doctorLine{
		{Check: "browser policy", Subject: "Chrome, Edge", Status: "ok",
			Message: "AuthServerAllowlist = " + strings.Join(chrome, ",") + " (" + why + ")"},
		{Check: "browser policy", Subject: "Firefox", Status: "ok",
			Message: "network.negotiate-auth.trusted-uris = " + strings.Join(firefox, ",")},
		{Check: "browser policy", Subject: "Windows", Status: "ok",
			Message: "Site to Zone Assignment List, Local intranet (1): " + strings.Join(zone, ", ")},
	}
}

// certChain checks that c's file, with the intermediates it holds, makes a
// chain to a root this machine trusts, as browsers must: a chain that
// does not is a warning, since a private CA the clients trust is fine.
func certChain(c config.Certificate, roots *x509.CertPool) doctorLine {
	l := doctorLine{Check: "certificate chain", Subject: c.Server + " " + c.Name, Status: "ok"}
	if len(c.Chain) == 0 {
		l.Status, l.Message = "warning", "no certificate to check"
		return l
	}
	inter := x509.NewCertPool()
	for _, ic := range c.Chain[1:] {
		inter.AddCert(ic)
	}
	if roots == nil {
		roots = x509.NewCertPool()
	}
	// The names are iwalb check's: here, the chain only.
	chains, err := c.Chain[0].Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter})
	if err != nil {
		l.Status, l.Message = "warning", "does not verify against this machine's roots: "+err.Error()
		l.Fix = "if the clients trust its CA (a private one), nothing; else put the intermediates in the file after the certificate"
		return l
	}
	l.Message = fmt.Sprintf("verifies to %s", chains[0][len(chains[0])-1].Subject.CommonName)
	return l
}

// resolveNames checks that each name served resolves here to addresses of
// its own, not through a CNAME: a browser asks a ticket for the SPN of the
// name the CNAME leads to, which the keytab does not hold for the alias.
func resolveNames(ctx context.Context, r *net.Resolver, names []string) []doctorLine {
	var out []doctorLine
	for _, n := range names {
		if strings.HasPrefix(n, "*.") {
			continue
		}
		l := doctorLine{Check: "dns", Subject: n, Status: "ok"}
		if net.ParseIP(n) != nil || !strings.Contains(n, ".") {
			l.Status, l.Message = "problem", "is an IP address or a short name: browsers ask no Kerberos ticket for it (or one for a name no SPN has)"
			l.Fix = "serve the fully qualified name, with an A/AAAA record and an HTTP/ SPN"
			out = append(out, l)
			continue
		}
		lctx, cancel := context.WithTimeout(ctx, 3*time.Second)
		cname, err := r.LookupCNAME(lctx, n)
		var addrs []string
		if err == nil {
			addrs, err = r.LookupHost(lctx, n)
		}
		cancel()
		canonical := strings.TrimSuffix(cname, ".")
		switch {
		case err != nil:
			l.Status, l.Message = "warning", "does not resolve from here: "+err.Error()
			l.Fix = "give it an A/AAAA record (browsers must resolve it to reach it)"
		case !strings.EqualFold(canonical, n):
			l.Status = "problem"
			l.Message = fmt.Sprintf("is an alias (CNAME) of %s: browsers ask a Kerberos ticket for HTTP/%s, not HTTP/%s", canonical, canonical, n)
			l.Fix = fmt.Sprintf("make %s an A/AAAA record of its own, or serve %s and register HTTP/%s", n, canonical, canonical)
		default:
			l.Message = "A/AAAA: " + strings.Join(addrs, ", ")
		}
		out = append(out, l)
	}
	return out
}

// otherOwners are the accounts but account that a failed SPN check of
// authnode.Node.Diagnose names as holding spn ("… spn is on a, b" for a
// duplicate, "… spn is on a, not account" for another account's); none
// when the error names none. A sAMAccountName has no comma.
func otherOwners(err error, spn, account string) []string {
	_, list, ok := strings.Cut(err.Error(), spn+" is on ")
	if !ok {
		return nil
	}
	list, _, _ = strings.Cut(list, ", not ")
	var out []string
	for _, a := range strings.Split(list, ", ") {
		if a != "" && !strings.EqualFold(a, account) {
			out = append(out, a)
		}
	}
	return out
}

// doctorFix says what fixes a failed readiness check.
func doctorFix(check string, err error, cfg authnode.Config) string {
	spn, account := cfg.SelfTestSPN, cfg.Account
	if name, ok := strings.CutPrefix(check, "spn "); ok {
		spn = name
	}
	switch {
	case errors.Is(err, authnode.ErrSPNNotRegistered):
		return fmt.Sprintf("register it on the service account: samba-tool spn add %s %s (Windows: setspn -S %s %s)", spn, account, spn, account)
	case errors.Is(err, authnode.ErrSPNDuplicate), errors.Is(err, authnode.ErrSPNOtherAccount):
		others := otherOwners(err, spn, account)
		if len(others) == 0 {
			others = []string{"OTHER_ACCOUNT"}
		}
		var del, setspn []string
		for _, o := range others {
			del = append(del, fmt.Sprintf("samba-tool spn delete %s %s", spn, o))
			setspn = append(setspn, fmt.Sprintf("setspn -D %s %s", spn, o))
		}
		return fmt.Sprintf("keep it on %s alone: %s (Windows: %s; setspn -X lists duplicates)", account, strings.Join(del, "; "), strings.Join(setspn, "; "))
	case errors.Is(err, authnode.ErrKeyVersion):
		return fmt.Sprintf("export the keytab again (the account's password changed since): samba-tool domain exportkeytab %s --principal=%s, or ktpass on Windows, then iwalb reload", cfg.Keytab, spn)
	case errors.Is(err, authnode.ErrNoAES):
		return fmt.Sprintf("allow AES on %s: msDS-SupportedEncryptionTypes = 24 (Windows: Set-ADUser %s -KerberosEncryptionType AES128,AES256), reset its password, export the keytab again", account, account)
	case errors.Is(err, negotiate.ErrSPNUnknown):
		return fmt.Sprintf("register the SPN on the service account: samba-tool spn add %s %s (Windows: setspn -S %s %s)", spn, account, spn, account)
	case errors.Is(err, negotiate.ErrKVNO), errors.Is(err, negotiate.ErrDecrypt), errors.Is(err, negotiate.ErrPreauthFailed):
		return fmt.Sprintf("the keytab's keys are not the account's current ones (its password changed since): export it again, samba-tool domain exportkeytab %s --principal=%s (Windows: ktpass -princ %s@%s -mapuser %s ...), and iwalb reload",
			cfg.Keytab, spn, spn, cfg.Realm, account)
	case errors.Is(err, negotiate.ErrEnctype):
		return "allow AES on the service account (msDS-SupportedEncryptionTypes = 24), reset its password and export the keytab again"
	case errors.Is(err, negotiate.ErrAccountUnknown):
		return fmt.Sprintf("kerberos.account %q is not an account of %s: name the account that holds the SPNs", account, cfg.Realm)
	case errors.Is(err, negotiate.ErrKDCUnreachable):
		return fmt.Sprintf("the KDC of %s does not answer: check its kdc lines in %s and that port 88 is reachable from here", cfg.Realm, cfg.Krb5Conf)
	case errors.Is(err, directory.ErrBind):
		return "the directory refused the proxy bind: check ldap.bind_dn and its password (bind_password_file or bind_password_env)"
	case errors.Is(err, directory.ErrUnavailable), errors.Is(err, directory.ErrTimeout):
		return fmt.Sprintf("the directory at %s does not answer: check ldap.url, the firewall, and its certificate against ldap.ca_file and ldap.server_name", cfg.LDAP.URL)
	case check == "store":
		return "Redis does not answer: check store.redis (addresses, TLS, password) and that it runs; iwalb does not fall back to memory"
	case check == "ntlm":
		return "ntlm_auth could not ask the domain: install winbind, join this host to the domain (net ads join -U Administrator), start winbindd (wbinfo -t checks the trust) and add iwalb's user to the winbindd_priv group; or set ntlm.enabled: false (Kerberos only)"
	case check == "oidc_keys":
		return "the provider could not read or write its signing keys: with generated keys, check that Redis answers (store.redis); with signing_keys, check the files"
	case check == "clock":
		return "synchronise this host's clock with the domain (chrony or ntpd against the domain controllers)"
	}
	return ""
}
