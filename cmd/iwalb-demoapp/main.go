// Command iwalb-demoapp is a tiny application behind iwalb's single sign-on:
// it receives the one-time token on its callback URL, redeems it at the auth
// node's API with its API key, and shows "Signed in as <user>" with the
// user's groups. The demo and the browser tests land on it.
//
// With -oidc-issuer it is instead an OpenID Connect relying party of the
// auth node's provider, built on go-oidc and x/oauth2 (oidc.go): "/" sends
// a browser that is not signed in through the authorization code flow,
// and the same page shows who signed in, with the amr; "Sign out" goes
// through the provider's end_session_endpoint.
//
// It is a demonstration of the application side of the protocol, not a part
// of the product.
package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"html/template"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "iwalb-demoapp:", err)
		os.Exit(1)
	}
}

type app struct {
	// nodes are the base URLs of the auth nodes' API, e.g.
	// https://auth1.example.test:8443. With the in-memory store a token and
	// its session live on the node that issued them, so the app asks each
	// in turn; with a shared store (shared) any one answers, and the next
	// is asked only when one cannot answer at all.
	nodes    []string
	shared   bool
	loginURL string // where "Sign in" sends the browser
	apiKey   string
	client   *http.Client
	log      *slog.Logger
}

func run(args []string) error {
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	h, opts, err := newServer(args, log)
	if err != nil {
		return err
	}
	srv := &http.Server{Addr: opts.listen, Handler: h, ReadHeaderTimeout: 10 * time.Second}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
	}()
	log.Info("demo app listening", "addr", opts.listen, "mode", opts.mode)
	if opts.cert != "" {
		err = srv.ListenAndServeTLS(opts.cert, opts.key)
	} else {
		err = srv.ListenAndServe()
	}
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return err
}

// serveOptions are the flags that say how to serve, not what.
type serveOptions struct {
	listen, cert, key string
	mode              string // "token" or "oidc", for the log
}

// newServer reads the flags and returns the application's handler in the
// mode they choose: with -oidc-issuer an OpenID Connect relying party
// (oidc.go), otherwise the receiver of iwalb's one-time token.
func newServer(args []string, log *slog.Logger) (http.Handler, serveOptions, error) {
	fs := flag.NewFlagSet("iwalb-demoapp", flag.ContinueOnError)
	var opts serveOptions
	fs.StringVar(&opts.listen, "listen", "127.0.0.1:8080", "address to listen on")
	var nodes []string
	fs.Func("node", "auth node base URL for the API, e.g. https://auth1.example.test:8443 (repeat for several nodes)", func(v string) error {
		nodes = append(nodes, strings.TrimRight(v, "/"))
		return nil
	})
	resolve := map[string]string{}
	fs.Func("resolve", "HOST:PORT:ADDR: dial ADDR for HOST:PORT instead of resolving it, as curl --resolve (repeatable)", func(v string) error {
		i := strings.LastIndex(v, ":")
		if i <= 0 {
			return fmt.Errorf("want HOST:PORT:ADDR, got %q", v)
		}
		resolve[v[:i]] = v[i+1:]
		return nil
	})
	ca := fs.String("ca", "", "CA file that signed the auth node's (or the OpenID provider's) certificate")
	keyFile := fs.String("api-key-file", "", "file holding this application's API key")
	loginURL := fs.String("login-url", "", "sign-in URL (the front door or the node's /sso)")
	shared := fs.Bool("shared-store", false, "the nodes share their store (Redis): ask the first node, and the next only when one cannot be reached or answers 503")
	fs.StringVar(&opts.cert, "cert", "", "TLS certificate (serve HTTPS when set)")
	fs.StringVar(&opts.key, "key", "", "TLS key")
	var oc oidcConfig
	oc.flags(fs)
	if err := fs.Parse(args); err != nil {
		return nil, opts, err
	}
	client, err := httpClient(*ca, resolve)
	if err != nil {
		return nil, opts, err
	}
	mux := http.NewServeMux()
	// For the tests' readiness checks: "/" may be a redirect to sign-in.
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "ok\n") })
	if oc.issuer != "" {
		opts.mode = "oidc"
		if len(nodes) > 0 || *keyFile != "" || *loginURL != "" || *shared {
			return nil, opts, errors.New("-node, -api-key-file, -login-url and -shared-store are for iwalb's token, not with -oidc-issuer")
		}
		o, err := newOIDCApp(oc, client, log)
		if err != nil {
			return nil, opts, err
		}
		o.routes(mux)
		return mux, opts, nil
	}
	opts.mode = "token"
	if len(nodes) == 0 || *keyFile == "" {
		return nil, opts, errors.New("-node and -api-key-file are required (or -oidc-issuer and its flags, for OpenID Connect)")
	}
	k, err := os.ReadFile(*keyFile)
	if err != nil {
		return nil, opts, fmt.Errorf("read API key: %w", err)
	}
	a := &app{
		nodes:    nodes,
		shared:   *shared,
		loginURL: *loginURL,
		apiKey:   strings.TrimSpace(string(k)),
		client:   client,
		log:      log,
	}
	if a.loginURL == "" {
		a.loginURL = a.nodes[0] + "/sso"
	}
	log.Info("token mode", "nodes", a.nodes)
	mux.HandleFunc("GET /sso/callback", a.callback)
	mux.HandleFunc("GET /{$}", a.home)
	mux.HandleFunc("POST /logout", a.logout)
	return mux, opts, nil
}

// httpClient is the client for the auth nodes' API or the OpenID provider:
// it trusts the CA file when one is given, and dials the -resolve
// addresses.
func httpClient(ca string, resolve map[string]string) (*http.Client, error) {
	tlsCfg := &tls.Config{MinVersion: tls.VersionTLS12}
	if ca != "" {
		pem, err := os.ReadFile(ca)
		if err != nil {
			return nil, fmt.Errorf("read CA: %w", err)
		}
		tlsCfg.RootCAs = x509.NewCertPool()
		if !tlsCfg.RootCAs.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("%s holds no certificate", ca)
		}
	}
	d := &net.Dialer{Timeout: 5 * time.Second}
	tr := &http.Transport{TLSClientConfig: tlsCfg, DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
		if ip, ok := resolve[addr]; ok {
			_, port, _ := net.SplitHostPort(addr)
			addr = net.JoinHostPort(ip, port)
		}
		return d.DialContext(ctx, network, addr)
	}}
	return &http.Client{Transport: tr, Timeout: 10 * time.Second}, nil
}

type identity struct {
	SAMAccountName    string   `json:"sAMAccountName"`
	UserPrincipalName string   `json:"userPrincipalName"`
	DisplayName       string   `json:"displayName"`
	Mail              string   `json:"mail"`
	Groups            []string `json:"groups"`
	Realm             string   `json:"realm"`
	Session           struct {
		ID        string    `json:"id"`
		ExpiresAt time.Time `json:"expiresAt"`
	} `json:"session"`
}

// call posts one secret to the auth nodes' API and decodes the identity.
// With per-node stores it asks each node in turn until one knows the
// secret; with a shared store every node knows every secret, so it asks
// another only when a node could not answer.
func (a *app) call(ctx context.Context, path, field, secret string) (*identity, error) {
	var errs []error
	for _, node := range a.nodes {
		id, status, err := a.callNode(ctx, node, path, field, secret)
		if err == nil {
			return id, nil
		}
		errs = append(errs, err)
		if !a.next(status) {
			break
		}
	}
	return nil, errors.Join(errs...)
}

// next says whether a failed call with status (0: no answer) is worth
// making at the next node.
func (a *app) next(status int) bool {
	if a.shared {
		return status == 0 || status == http.StatusServiceUnavailable || status == http.StatusBadGateway
	}
	return status == http.StatusNotFound // only "not here"
}

func (a *app) callNode(ctx context.Context, node, path, field, secret string) (*identity, int, error) {
	body, _ := json.Marshal(map[string]string{field: secret})
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, node+path, bytes.NewReader(body))
	if err != nil {
		return nil, 0, err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+a.apiKey)
	resp, err := a.client.Do(req)
	if err != nil {
		return nil, 0, err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if resp.StatusCode != http.StatusOK {
		return nil, resp.StatusCode, fmt.Errorf("%s%s: %s: %s", node, path, resp.Status, strings.TrimSpace(string(b)))
	}
	var id identity
	if err := json.Unmarshal(b, &id); err != nil {
		return nil, resp.StatusCode, fmt.Errorf("%s%s: %w", node, path, err)
	}
	return &id, resp.StatusCode, nil
}

func (a *app) callback(w http.ResponseWriter, r *http.Request) {
	id, err := a.call(r.Context(), "/api/v1/tokens/redeem", "token", r.URL.Query().Get("ssoToken"))
	if err != nil {
		a.log.Warn("redeem failed", "err", err)
		render(w, http.StatusForbidden, page{Title: "Sign-in failed", Error: err.Error(), LoginURL: a.loginURL})
		return
	}
	http.SetCookie(w, &http.Cookie{Name: "demo_session", Value: id.Session.ID, Path: "/",
		HttpOnly: true, Secure: r.TLS != nil, SameSite: http.SameSiteLaxMode, Expires: id.Session.ExpiresAt})
	a.log.Info("signed in", "user", id.SAMAccountName)
	render(w, http.StatusOK, page{Title: "Signed in", ID: id})
}

func (a *app) home(w http.ResponseWriter, r *http.Request) {
	c, err := r.Cookie("demo_session")
	if err != nil {
		render(w, http.StatusOK, page{Title: "Not signed in", LoginURL: a.loginURL})
		return
	}
	id, err := a.call(r.Context(), "/api/v1/sessions/validate", "session", c.Value)
	if err != nil {
		render(w, http.StatusOK, page{Title: "Not signed in", Error: err.Error(), LoginURL: a.loginURL})
		return
	}
	render(w, http.StatusOK, page{Title: "Signed in", ID: id})
}

func (a *app) logout(w http.ResponseWriter, r *http.Request) {
	if c, err := r.Cookie("demo_session"); err == nil {
		// Ending an unknown session is no error, so with per-node stores
		// tell every node; with a shared store, the first that answers.
		for _, node := range a.nodes {
			body, _ := json.Marshal(map[string]string{"session": c.Value})
			req, _ := http.NewRequestWithContext(r.Context(), http.MethodPost, node+"/logout", bytes.NewReader(body))
			req.Header.Set("Content-Type", "application/json")
			req.Header.Set("Authorization", "Bearer "+a.apiKey)
			status := 0
			if resp, err := a.client.Do(req); err == nil {
				status = resp.StatusCode
				resp.Body.Close()
			}
			if a.shared && status == http.StatusOK {
				break
			}
		}
	}
	http.SetCookie(w, &http.Cookie{Name: "demo_session", Path: "/", MaxAge: -1})
	render(w, http.StatusOK, page{Title: "Signed out", LoginURL: a.loginURL})
}

type page struct {
	Title    string
	ID       *identity
	Auth     *oidcAuth // how an OpenID Connect sign-in was made; nil in the token mode
	Error    string
	LoginURL string
}

var tmpl = template.Must(template.New("p").Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>iwalb demo: {{.Title}}</title></head>
<body style="font-family:sans-serif;max-width:40em;margin:3em auto">
<h1>iwalb demo application</h1>
{{with .ID}}<p id="who">Signed in as {{.SAMAccountName}}</p>
<p>{{.DisplayName}} &lt;{{.UserPrincipalName}}&gt;{{with .Realm}}, realm {{.}}{{end}}</p>
<p>Groups:</p><ul id="groups">{{range .Groups}}<li>{{.}}</li>{{end}}</ul>
{{with $.Auth}}<p id="auth">OpenID Connect sign-in at {{.Issuer}}: amr <span id="amr">{{range $i, $m := .AMR}}{{if $i}} {{end}}{{$m}}{{end}}</span> ({{.Method}}); this application authenticated to the provider with {{.ClientAuth}}</p>{{end}}
<form method="post" action="/logout"><button>Sign out</button></form>
{{else}}<p id="who">{{$.Title}}</p>{{end}}
{{with .Error}}<p id="error">{{.}}</p>{{end}}
{{with .LoginURL}}<p><a href="{{.}}">Sign in with Windows</a></p>{{end}}
</body></html>
`))

func render(w http.ResponseWriter, status int, p page) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = tmpl.Execute(w, p)
}
