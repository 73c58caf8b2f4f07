package oidc

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

// Check checks one client, with its defaults, as New does.
func (cl Client) Check() error {
	c := Config{Clients: []Client{cl}}.withDefaults()
	return c.Clients[0].validate()
}
