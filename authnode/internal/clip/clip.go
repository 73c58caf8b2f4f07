// Package clip shortens strings that a client controls (principal names,
// SPNs, realms, parser details) before they go into a log line or an error,
// so that no request can make either large.
//
//	log.Info("login", "user", clip.String(id.User))
//	fmt.Errorf("ticket is for %s", clip.String(spn))
package clip

import (
	"strconv"
	"unicode/utf8"
)

// Max is how many bytes String keeps of a client-controlled string.
const Max = 256

// String returns s when it is at most Max bytes long, else its first Max
// bytes (cut at a UTF-8 boundary) marked "…(truncated, N bytes)", N being
// len(s).
func String(s string) string { return N(s, Max) }

// N is String with a bound of n bytes instead of Max.
func N(s string, n int) string {
	if len(s) <= n {
		return s
	}
	cut := max(n, 0)
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "…(truncated, " + strconv.Itoa(len(s)) + " bytes)"
}
