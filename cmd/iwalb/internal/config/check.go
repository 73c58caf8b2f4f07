package config

import (
	"crypto/x509"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// checker collects problems while a file is decoded, validated and built.
// Validation never stops at the first problem: an operator fixing a file
// wants the whole list.
type checker struct {
	file     string // as given to Load, for Problem.File
	dir      string // absolute folder of the file; relative paths resolve here
	problems Problems
	warnings Problems
	// badValue holds the lines of values the decoder already refused, so
	// that validation does not report them a second time as empty.
	badValue map[int]bool
	// certs are the server certificates loaded, for File.Certificates.
	certs []Certificate
}

func (c *checker) add(line int, format string, args ...any) {
	c.problems = append(c.problems, Problem{File: c.file, Line: line, Msg: fmt.Sprintf(format, args...)})
}

// warn records a Warning.
func (c *checker) warn(line int, format string, args ...any) {
	c.warnings = append(c.warnings, Problem{File: c.file, Line: line, Msg: fmt.Sprintf(format, args...), Warning: true})
}

// need reports a required value that is missing (at the section's line) or
// empty (at the key's line), and says whether it is there.
func (c *checker) need(set bool, line int, sec pos, path, key string) bool {
	switch {
	case set:
		return true
	case c.badValue[line]:
	case line > 0:
		c.add(line, "%s.%s is empty", path, key)
	default:
		c.add(sec.Line, "missing required key %q in %s", key, path)
	}
	return false
}

// needStr is need for the common case of a string.
func (c *checker) needStr(s str, sec pos, path, key string) bool {
	if s.Set && strings.TrimSpace(s.V) == "" {
		c.add(s.Line, "%s.%s is empty", path, key)
		return false
	}
	return c.need(s.Set, s.Line, sec, path, key)
}

// abs resolves p against the folder of the configuration file.
func (c *checker) abs(p string) string {
	if filepath.IsAbs(p) {
		return filepath.Clean(p)
	}
	return filepath.Join(c.dir, p)
}

// readFile reads the file named by s (at path in the YAML) and reports why
// it cannot, naming the file both as written and as resolved.
func (c *checker) readFile(s str, path string) (data []byte, abs string, ok bool) {
	abs = c.abs(s.V)
	data, err := os.ReadFile(abs)
	if err != nil {
		c.add(s.Line, "%s: cannot read %s: %s", path, showPath(s.V, abs), reason(err))
		return nil, abs, false
	}
	return data, abs, true
}

// readPrivateFile is readFile for a file that holds a secret (a private
// key, a keytab, a password): like ssh with its keys, it warns when the
// file is open to the group or others, since anyone who can read it can be
// the service.
func (c *checker) readPrivateFile(s str, path string) (data []byte, abs string, ok bool) {
	data, abs, ok = c.readFile(s, path)
	if !ok {
		return data, abs, ok
	}
	if fi, err := os.Stat(abs); err == nil && fi.Mode().Perm()&0o077 != 0 {
		c.warn(s.Line, "%s: %s is open to group or others (mode %04o); it holds a secret: chmod 600 %s (iwalb run refuses it)",
			path, showPath(s.V, abs), fi.Mode().Perm(), abs)
	}
	return data, abs, true
}

// readCAs reads a PEM file that must hold at least one CA certificate.
func (c *checker) readCAs(s str, path string) (abs string, ok bool) {
	abs, _, ok = c.readCertPool(s, path)
	return abs, ok
}

// readCertPool is readCAs for callers that verify with the certificates
// themselves rather than hand the path on.
func (c *checker) readCertPool(s str, path string) (abs string, pool *x509.CertPool, ok bool) {
	data, abs, ok := c.readFile(s, path)
	if !ok {
		return abs, nil, false
	}
	pool = x509.NewCertPool()
	if !pool.AppendCertsFromPEM(data) {
		c.add(s.Line, "%s: %s holds no PEM certificate", path, showPath(s.V, abs))
		return abs, nil, false
	}
	return abs, pool, true
}

// secret reads a secret from exactly one of a file (one trailing newline
// stripped, as editors and `echo` add one) or an environment variable.
// Inline secrets are refused by the decoder, so they never reach here.
func (c *checker) secret(file, env str, sec pos, path, fileKey, envKey string) (string, bool) {
	switch {
	case !file.Set && !env.Set:
		c.add(sec.Line, "missing %s or %s in %s", fileKey, envKey, path)
		return "", false
	case file.Set && env.Set:
		c.add(env.Line, "%s: give %s or %s, not both", path, fileKey, envKey)
		return "", false
	case file.Set:
		data, abs, ok := c.readPrivateFile(file, path+"."+fileKey)
		if !ok {
			return "", false
		}
		s := string(data)
		if t, ok := strings.CutSuffix(s, "\n"); ok {
			s = strings.TrimSuffix(t, "\r")
		}
		if s == "" {
			c.add(file.Line, "%s.%s: %s is empty", path, fileKey, showPath(file.V, abs))
			return "", false
		}
		return s, true
	default:
		v, ok := os.LookupEnv(env.V)
		switch {
		case !ok:
			c.add(env.Line, "%s.%s: environment variable %s is not set", path, envKey, env.V)
			return "", false
		case v == "":
			c.add(env.Line, "%s.%s: environment variable %s is empty", path, envKey, env.V)
			return "", false
		}
		return v, true
	}
}

// hostPort checks a listen address: host:port, host may be empty (all
// addresses), port a number from 1 to 65535 (no service names, no 0: a
// random port is useless to the clients that must find it).
func (c *checker) hostPort(s str, path string) bool {
	_, port, err := net.SplitHostPort(s.V)
	if err != nil {
		c.add(s.Line, "%s: %q is not host:port (like 127.0.0.1:8443 or :8443)", path, s.V)
		return false
	}
	if p, err := strconv.Atoi(port); err != nil || p < 1 || p > 65535 {
		c.add(s.Line, "%s: port %q in %q is not a number from 1 to 65535", path, port, s.V)
		return false
	}
	return true
}

// positive returns d, def when d is unset, and reports d <= 0.
func (c *checker) positive(d duration, path string, def time.Duration) time.Duration {
	if !d.Set {
		return def
	}
	if d.V <= 0 {
		c.add(d.Line, "%s: must be more than zero, got %s", path, d.V)
		return def
	}
	return d.V
}

// showPath names a file as written and, when that was relative, as resolved.
func showPath(written, abs string) string {
	if written == abs {
		return strconv.Quote(abs)
	}
	return fmt.Sprintf("%q (%s)", written, abs)
}

// reason strips the "open /path:" prefix that showPath already gives.
func reason(err error) string {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err.Error()
	}
	return err.Error()
}

// plainLabel checks that a name, which becomes a metric label, is plain.
func (c *checker) plainLabel(s str, path string) bool {
	if plainName.MatchString(s.V) {
		return true
	}
	c.add(s.Line, "%s.name: %q is not a plain name (letters, digits, '.', '_' and '-'); it becomes a metric label", path, s.V)
	return false
}

// labelName checks the required name of a pool, backend or listener: plain
// (it becomes a metric label) and unique among seen (name → line), which it
// records. what ("pool name") and where (" in the pool") word the duplicate.
func (c *checker) labelName(s str, sec pos, path, what, where string, seen map[string]int) {
	if !c.needStr(s, sec, path, "name") || !c.plainLabel(s, path) {
		return
	}
	if first, dup := seen[s.V]; dup {
		c.add(s.Line, "%s.name: duplicate %s %q%s (first at line %d)", path, what, s.V, where, first)
		return
	}
	seen[s.V] = s.Line
}
