package oidc

import (
	"errors"
	"net/url"
)

// The checks New makes, for a configuration reader that reports each
// problem at the line it comes from.

// Check checks c, with its defaults, as New does.
func (c Config) Check() error {
	c = c.withDefaults()
	return c.validate()
}

// CheckIssuer checks an issuer URL as New does: https, canonical, no
// query, fragment or trailing slash.
func CheckIssuer(s string) error { return checkIssuer(s) }

// CheckBackchannel checks a back-channel URL (Config.BackchannelURL) for
// issuer, as New does.
func CheckBackchannel(s, issuer string) error { return checkBackchannel(s, issuer) }

// Check checks one client, with its defaults, as New does.
func (cl Client) Check() error {
	c := Config{Clients: []Client{cl}}.withDefaults()
	return c.Clients[0].validate()
}

// checkBackchannel checks a back-channel URL: an issuer-like URL with the
// issuer's path, or empty.
func checkBackchannel(s, issuer string) error {
	if s == "" {
		return nil
	}
	if err := checkIssuer(s); err != nil {
		return err
	}
	u, _ := url.Parse(s)
	iu, err := url.Parse(issuer)
	if err != nil || u.EscapedPath() != iu.EscapedPath() {
		return errors.New("must have the issuer's path (the nodes serve the endpoints there)")
	}
	return nil
}

// backchannel is the base URL of the endpoints relying parties' servers
// call.
func (p *Provider) backchannel() string {
	if p.cfg.BackchannelURL != "" {
		return p.cfg.BackchannelURL
	}
	return p.cfg.Issuer
}
