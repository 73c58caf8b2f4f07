package authnode

import (
	"html/template"
	"net/http"
)

// pageTemplate is the short page shown when sign-in does not succeed. It
// names the reason so that a help desk can match it with the node's log.
var pageTemplate = template.Must(template.New("page").Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{{.Title}}</title>
<style>body{font-family:sans-serif;max-width:40em;margin:3em auto;line-height:1.4}code{background:#eee;padding:0 .2em}</style>
</head><body>
<h1>{{.Title}}</h1>
<p>{{.Hint}}</p>
<ul>
<li>Use a computer that is joined to the domain, signed in with your domain account.</li>
<li>Open the site by its full name, and make sure it is in the browser's local intranet zone.</li>
</ul>
<p>Reason: <code>{{.Reason}}</code> (HTTP {{.Status}})</p>
</body></html>
`))

func writePage(w http.ResponseWriter, status int, title, hint, reason string) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	_ = pageTemplate.Execute(w, struct {
		Title, Hint, Reason string
		Status              int
	}{title, hint, reason, status})
}
