package oidc

import (
	"html/template"
	"net/http"
	"net/url"
)

// The pages are plain and need nothing from elsewhere: no scripts, no
// styles, not framed, and forms post only to this host (and may be
// redirected on to the registered address, which browsers also hold to
// form-action).
const pageCSP = "default-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"

var pageTemplate = template.Must(template.New("page").Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>{{.Title}}</title></head><body><main>
<h1>{{.Title}}</h1>
<p>{{.Text}}</p>
{{with .Form}}<form method="post" action="{{.Action}}">
{{range $k, $v := .Fields}}{{with index $v 0}}<input type="hidden" name="{{$k}}" value="{{.}}">
{{end}}{{end}}<button type="submit">Sign out</button>
</form>{{end}}
</main></body></html>
`))

type pageForm struct {
	Action string
	Fields url.Values
}

func renderPage(w http.ResponseWriter, status int, csp, title, text string, form *pageForm) {
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Content-Security-Policy", csp)
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	_ = pageTemplate.Execute(w, struct {
		Title, Text string
		Form        *pageForm
	}{title, text, form})
}

// writePage answers with a page that says what happened.
func writePage(w http.ResponseWriter, status int, title, text string) {
	renderPage(w, status, pageCSP, title, text, nil)
}

// writeConfirm asks the user to confirm a sign-out, with a form that posts
// fields back to action and may be redirected on to target.
func writeConfirm(w http.ResponseWriter, action, target string, fields url.Values) {
	csp := pageCSP
	if u, err := url.Parse(target); err == nil && target != "" {
		csp += " " + u.Scheme + "://" + u.Host
	}
	renderPage(w, http.StatusOK, csp, "Sign out?",
		"An application asks to sign you out of this sign-in service.",
		&pageForm{Action: action, Fields: fields})
}
