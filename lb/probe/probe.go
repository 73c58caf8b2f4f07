// Package probe holds the health-check probes that speak TLS and HTTPS, so
// that package lb itself stays free of protocols. Each constructor returns an
// lb.Prober for lb.HealthCheck.Probe.
//
//	health := lb.HealthCheck{Interval: 2 * time.Second, Probe: probe.HTTPS(tlsConf, "/readyz", http.StatusOK)}
//
// Probes dial the backend's Addr and present its FQDN (or the host of Addr)
// as the TLS server name and HTTP Host, so a node is checked under the name
// its certificate carries.
package probe

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"time"

	"github.com/iwalb/iwalb/lb"
)

// serverName is the name a probe presents for b.
func serverName(b *lb.Backend) string {
	if b.FQDN != "" {
		return b.FQDN
	}
	host, _, err := net.SplitHostPort(b.Addr)
	if err != nil {
		return b.Addr
	}
	return host
}

func clientConfig(base *tls.Config, b *lb.Backend) *tls.Config {
	var c *tls.Config
	if base != nil {
		c = base.Clone()
	} else {
		c = &tls.Config{}
	}
	if c.ServerName == "" {
		c.ServerName = serverName(b)
	}
	return c
}

// TLS returns a probe that succeeds when a TLS handshake with the backend
// completes and its certificate verifies under conf (nil means the system
// roots). conf.ServerName, if empty, is set per backend.
func TLS(conf *tls.Config) lb.Prober {
	return lb.ProberFunc(func(ctx context.Context, b *lb.Backend) error {
		d := tls.Dialer{Config: clientConfig(conf, b)}
		c, err := d.DialContext(ctx, "tcp", b.Addr)
		if err != nil {
			return err
		}
		return c.Close()
	})
}

// HTTPS returns a probe that sends GET path over TLS to the backend and
// succeeds when the response status is wantStatus (0 means 200). Redirects
// are not followed and no connection is reused between checks, so each check
// proves that a fresh client can get through.
func HTTPS(conf *tls.Config, path string, wantStatus int) lb.Prober {
	if wantStatus == 0 {
		wantStatus = http.StatusOK
	}
	return lb.ProberFunc(func(ctx context.Context, b *lb.Backend) error {
		tr := &http.Transport{
			TLSClientConfig:   clientConfig(conf, b),
			DisableKeepAlives: true,
			DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
				var d net.Dialer
				return d.DialContext(ctx, network, b.Addr)
			},
			TLSHandshakeTimeout: 10 * time.Second, // ctx is the real bound
		}
		defer tr.CloseIdleConnections()
		client := &http.Client{
			Transport:     tr,
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		}
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, "https://"+serverName(b)+path, nil)
		if err != nil {
			return err
		}
		req.Header.Set("User-Agent", "iwalb-health-check")
		resp, err := client.Do(req)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
		if resp.StatusCode != wantStatus {
			return fmt.Errorf("GET %s: status %d, want %d", path, resp.StatusCode, wantStatus)
		}
		return nil
	})
}
