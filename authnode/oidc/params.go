package oidc

import (
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"slices"
	"strings"
)

// Bounds of a request's parameters, whatever the endpoint: the encoded
// parameters, how many there are, and each known one's decoded length.
// Unknown parameters are ignored (OIDC Core §3.1.2.1) but count toward the
// first two bounds.
const (
	maxParamBytes = 16 << 10
	maxParamCount = 48
)

// MaxResumeBytes is the longest AuthRequest.Resume that CheckResume and
// Resume take back: a sign-in form that carries it must take a body that
// holds it.
const MaxResumeBytes = maxParamBytes

// Per-endpoint known parameters and their longest decoded values. The
// value bounds are generous for what a client sends (a state of 2 KiB is
// far more than any library makes) and small for what this provider made
// (codes and tokens are 43 characters).
var (
	authorizeParams = map[string]int{
		"client_id": maxClientID, "redirect_uri": maxRedirectURI, "response_type": 64,
		"scope": 1024, "state": 2048, "nonce": 512, "code_challenge": 128,
		"code_challenge_method": 16, "response_mode": 32, "prompt": 64, "max_age": 10,
		"login_hint": 256, "id_token_hint": maxIDTokenHint, "request": 0, "request_uri": 0,
		"registration": 0, "display": 32, "ui_locales": 256, "claims_locales": 256,
		"acr_values": 256, "claims": 0,
	}
	tokenParams = map[string]int{
		"grant_type": 64, "code": 64, "redirect_uri": maxRedirectURI, "client_id": maxClientID,
		"client_secret": maxSecret, "code_verifier": 128, "scope": 1024,
		// The assertion's own bound (maxAssertionBytes) is checked as
		// part of client authentication, so that a client learns of it
		// as of any other failure of its assertion (invalid_client).
		"client_assertion": maxParamBytes, "client_assertion_type": 128, "refresh_token": 64,
	}
	logoutParams = map[string]int{
		"id_token_hint": maxIDTokenHint, "client_id": maxClientID, "post_logout_redirect_uri": maxRedirectURI,
		"state": 2048, "ui_locales": 256, "logout_hint": 256, "confirm": 8,
	}
)

// maxIDTokenHint bounds an id_token_hint: an ID token of a user in a
// thousand groups is some 40 KB with their SIDs, but a hint of that size
// is refused rather than parsed (the logout then asks the user).
const maxIDTokenHint = 8 << 10

// paramError is a request whose parameters cannot be read. Its message
// names the parameter, never its value.
type paramError struct{ msg string }

func (e *paramError) Error() string { return e.msg }

func paramErrorf(format string, args ...any) error {
	return &paramError{fmt.Sprintf(format, args...)}
}

// parseParams reads raw (application/x-www-form-urlencoded) into the known
// parameters of known. It refuses more than maxParamBytes or maxParamCount,
// malformed encoding, a parameter given twice (RFC 6749 §3.1), and a known
// one longer than its bound (a bound of 0: not supported at all, so any
// value is refused). Empty values count as absent (RFC 6749 §3.1).
func parseParams(raw string, known map[string]int) (map[string]string, error) {
	if len(raw) > maxParamBytes {
		return nil, paramErrorf("the parameters are longer than %d bytes", maxParamBytes)
	}
	if strings.Count(raw, "&") >= maxParamCount {
		return nil, paramErrorf("more than %d parameters", maxParamCount)
	}
	vals, err := url.ParseQuery(raw)
	if err != nil {
		return nil, paramErrorf("the parameters are not well-formed form encoding")
	}
	out := make(map[string]string, len(vals))
	for k, vs := range vals {
		if len(vs) > 1 {
			return nil, paramErrorf("parameter %s is given more than once", clipName(k))
		}
		bound, ok := known[k]
		if !ok || vs[0] == "" {
			continue
		}
		if bound == 0 {
			return nil, paramErrorf("parameter %s is not supported", k)
		}
		if len(vs[0]) > bound {
			return nil, paramErrorf("parameter %s is longer than %d bytes", k, bound)
		}
		out[k] = vs[0]
	}
	return out, nil
}

// clipName bounds a parameter name quoted in an error, and keeps it
// printable.
func clipName(s string) string {
	const maxName = 40
	if len(s) > maxName {
		s = s[:maxName] + "…"
	}
	return fmt.Sprintf("%q", s)
}

// clip bounds a value a client chose (or a name from the directory) for a
// log line; the handler quotes it.
func clip(s string) string {
	const maxLog = 64
	if len(s) > maxLog {
		s = s[:maxLog] + "…"
	}
	return strings.ToValidUTF8(s, "\uFFFD")
}

// requestParams reads the parameters of r: the query of a GET, the form
// body of a POST (which then may have no query, so that nothing is read
// from two places). Other methods are refused by the caller.
func requestParams(w http.ResponseWriter, r *http.Request, known map[string]int) (map[string]string, error) {
	switch r.Method {
	case http.MethodGet, http.MethodHead:
		return parseParams(r.URL.RawQuery, known)
	case http.MethodPost:
		if r.URL.RawQuery != "" {
			return nil, paramErrorf("a POST carries its parameters in the body, not the query")
		}
		mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
		if mt != "application/x-www-form-urlencoded" {
			return nil, paramErrorf("the body must be application/x-www-form-urlencoded")
		}
		body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxParamBytes+1))
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) || len(body) > maxParamBytes {
			return nil, paramErrorf("the parameters are longer than %d bytes", maxParamBytes)
		}
		if err != nil {
			return nil, paramErrorf("the body could not be read")
		}
		return parseParams(string(body), known)
	}
	return nil, paramErrorf("method %s is not allowed", r.Method)
}

// spaceList splits a space-delimited parameter (scope, prompt) into its
// values, each once, in their order.
func spaceList(s string) []string {
	var out []string
	for _, p := range strings.Fields(s) {
		if !slices.Contains(out, p) {
			out = append(out, p)
		}
	}
	return out
}
