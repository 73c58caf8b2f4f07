package l7redirect

import (
	"math/rand/v2"
	"strings"
	"testing"
)

// cleanPathReference is cleanPath as it was before it became linear: it
// repeats one pass until nothing changes, so "/%2F../%2F../…" costs a pass
// per segment. It is kept as the specification the linear cleanPath must
// match.
func cleanPathReference(p string) string {
	for {
		q := cleanOnceReference(p)
		if q == p {
			return q
		}
		p = q
	}
}

func cleanOnceReference(p string) string {
	segs := strings.Split(p, "/")
	out := make([]string, 0, len(segs))
	for i, s := range segs {
		last := i == len(segs)-1
		switch {
		case isDotReference(s):
			if last {
				out = append(out, "")
			}
		case isDotDotReference(s):
			if len(out) > 0 {
				out = out[:len(out)-1]
			}
			if last {
				out = append(out, "")
			}
		default:
			out = append(out, s)
		}
	}
	for len(out) > 0 {
		s := trimSlashLikeReference(out[0])
		if s == "" && len(out) > 1 {
			out = out[1:]
			continue
		}
		out[0] = s
		break
	}
	return "/" + strings.Join(out, "/")
}

func isDotReference(s string) bool { return s == "." || strings.EqualFold(s, "%2e") }

func isDotDotReference(s string) bool {
	switch strings.ToLower(s) {
	case "..", ".%2e", "%2e.", "%2e%2e":
		return true
	}
	return false
}

func trimSlashLikeReference(s string) string {
	for {
		switch {
		case strings.HasPrefix(s, `\`):
			s = s[1:]
		case len(s) >= 3 && (strings.EqualFold(s[:3], "%2f") || strings.EqualFold(s[:3], "%5c")):
			s = s[3:]
		default:
			return s
		}
	}
}

// pathTokens are the pieces that matter to cleanPath: separators in every
// spelling, dots in every spelling, and plain bytes, including the halves
// of escapes, so that joined they also spell escapes no token spells alone.
var pathTokens = []string{"/", ".", "..", "%2e", "%2E", "%2f", "%2F", "%5c", "%5C", `\`, "a", "%", "%2", "e", "E", "f"}

// TestCleanPathMatchesReference proves the linear cleanPath equal to the
// repeating one on every path of up to four tokens, and on random longer
// ones.
func TestCleanPathMatchesReference(t *testing.T) {
	check := func(p string) {
		t.Helper()
		if got, want := cleanPath(p), cleanPathReference(p); got != want {
			t.Fatalf("cleanPath(%q) = %q, the reference gives %q", p, got, want)
		}
	}
	n := 0
	var gen func(prefix string, depth int)
	gen = func(prefix string, depth int) {
		check(prefix)
		n++
		if depth == 0 {
			return
		}
		for _, tok := range pathTokens {
			gen(prefix+tok, depth-1)
		}
	}
	gen("", 4)
	gen("/", 4)

	rng := rand.New(rand.NewPCG(7, 7))
	random := 100000
	if testing.Short() {
		random = 10000
	}
	var b strings.Builder
	for range random {
		b.Reset()
		if rng.IntN(4) > 0 {
			b.WriteByte('/')
		}
		for range rng.IntN(24) {
			// Slashes and dot segments often, so that the front is
			// exposed again and again.
			switch r := rng.IntN(10); {
			case r < 4:
				b.WriteString("/")
			case r < 7:
				b.WriteString(pathTokens[1+rng.IntN(9)])
			default:
				b.WriteString(pathTokens[rng.IntN(len(pathTokens))])
			}
		}
		check(b.String())
	}
	t.Logf("%d exhaustive and %d random paths agree", n, random)
}
