package config

import (
	"fmt"
	"strings"

	"github.com/iwalb/iwalb/authnode"
	"github.com/iwalb/iwalb/authnode/oidc"
)

// rawOIDC is authnode.oidc: the node as an OpenID Connect provider.
type rawOIDC struct {
	At             pos             `yaml:"-"`
	Enabled        boolean         `yaml:"enabled"`
	Issuer         str             `yaml:"issuer"`
	BackchannelURL str             `yaml:"backchannel_url"`
	SigningAlg     str             `yaml:"signing_alg"`
	SigningKeys    strList         `yaml:"signing_keys"`
	KeyRotation    duration        `yaml:"key_rotation"`
	KeyGrace       duration        `yaml:"key_grace"`
	CodeTTL        duration        `yaml:"code_ttl"`
	IDTokenTTL     duration        `yaml:"id_token_ttl"`
	AccessTokenTTL duration        `yaml:"access_token_ttl"`
	RefreshTTL     duration        `yaml:"refresh_token_ttl"`
	Clients        []rawOIDCClient `yaml:"clients"`
}

// rawOIDCClient is one relying party of authnode.oidc.clients.
type rawOIDCClient struct {
	At                     pos     `yaml:"-"`
	ID                     str     `yaml:"id"`
	Secret                 refused `yaml:"secret" refuse:"inline secrets are not allowed; use secret_file or secret_env"`
	SecretFile             str     `yaml:"secret_file"`
	SecretEnv              str     `yaml:"secret_env"`
	TokenAuth              str     `yaml:"token_auth"`
	KeysFile               str     `yaml:"keys_file"`
	RefreshTokens          boolean `yaml:"refresh_tokens"`
	RedirectURIs           strList `yaml:"redirect_uris"`
	PostLogoutRedirectURIs strList `yaml:"post_logout_redirect_uris"`
	Scopes                 strList `yaml:"scopes"`
	RequiredGroup          str     `yaml:"required_group"`
	GroupSIDs              boolean `yaml:"group_sids"`
}

// authNodeOIDC checks authnode.oidc and returns the provider's
// configuration, or nil when it is not enabled. Each problem is reported
// at its line: the issuer, each client, each redirect URI, each key file;
// what only the whole can say (lifetimes against each other) at the
// section's.
func (c *checker) authNodeOIDC(r rawOIDC, p, ssoPath string) *oidc.Config {
	if !r.Enabled.V {
		if r.At.Set && (r.Issuer.Set || len(r.Clients) > 0) {
			c.warn(r.At.Line, "%s: ignored: the OpenID Connect provider is not enabled (enabled: true)", p)
		}
		return nil
	}
	before := len(c.problems)
	cfg := &oidc.Config{
		SigningAlg:      r.SigningAlg.V,
		KeyRotation:     r.KeyRotation.V,
		KeyGrace:        r.KeyGrace.V,
		CodeTTL:         r.CodeTTL.V,
		IDTokenTTL:      r.IDTokenTTL.V,
		AccessTokenTTL:  r.AccessTokenTTL.V,
		RefreshTokenTTL: r.RefreshTTL.V,
	}
	if c.needStr(r.Issuer, r.At, p, "issuer") {
		cfg.Issuer = r.Issuer.V
		if err := oidc.CheckIssuer(cfg.Issuer); err != nil {
			c.add(r.Issuer.Line, "%s.issuer: %q %v", p, cfg.Issuer, err)
		} else if err := authnode.CheckOIDCPaths(cfg.Issuer, ssoPath); err != nil {
			c.add(r.Issuer.Line, "%s.issuer: %q: %v", p, cfg.Issuer, err)
		}
	}
	if r.BackchannelURL.Set {
		cfg.BackchannelURL = r.BackchannelURL.V
		if err := oidc.CheckBackchannel(cfg.BackchannelURL, cfg.Issuer); err != nil {
			c.add(r.BackchannelURL.Line, "%s.backchannel_url: %q %v", p, cfg.BackchannelURL, err)
		}
	}
	for i, f := range r.SigningKeys.V {
		kp := fmt.Sprintf("%s.signing_keys[%d]", p, i)
		data, abs, ok := c.readPrivateFile(f, kp)
		if !ok {
			continue
		}
		k, err := oidc.ParseSigningKey(data)
		if err != nil {
			c.add(f.Line, "%s: %s: %v", kp, showPath(f.V, abs), err)
			continue
		}
		cfg.SigningKeys = append(cfg.SigningKeys, k)
	}
	if len(r.Clients) == 0 {
		c.add(r.At.Line, "%s.clients: at least one relying party is required", p)
	}
	ids := map[string]int{}
	for i, rc := range r.Clients {
		cp := fmt.Sprintf("%s.clients[%d]", p, i)
		if first, dup := ids[rc.ID.V]; dup && rc.ID.Set {
			c.add(rc.ID.Line, "%s.id: %q is registered twice (first at line %d)", cp, rc.ID.V, first)
		} else {
			ids[rc.ID.V] = rc.ID.Line
		}
		if cl, ok := c.oidcClient(rc, cp); ok {
			cfg.Clients = append(cfg.Clients, cl)
		}
	}
	if len(c.problems) > before {
		return cfg
	}
	// The rest: lifetimes and algorithms against each other.
	if err := cfg.Check(); err != nil {
		c.add(r.At.Line, "%s: %v", p, err)
	}
	return cfg
}

// oidcClient checks one relying party: its id, secret (a file or the
// environment, never inline), token endpoint authentication, and each
// redirect URI at its own line.
func (c *checker) oidcClient(rc rawOIDCClient, cp string) (oidc.Client, bool) {
	cl := oidc.Client{
		ID: rc.ID.V, TokenAuth: rc.TokenAuth.V, RequiredGroup: rc.RequiredGroup.V, GroupSIDs: rc.GroupSIDs.V,
		RefreshTokens: rc.RefreshTokens.V,
	}
	before := len(c.problems)
	c.needStr(rc.ID, rc.At, cp, "id")
	if rc.SecretFile.Set || rc.SecretEnv.Set {
		if s, ok := c.secret(rc.SecretFile, rc.SecretEnv, rc.At, cp, "secret_file", "secret_env"); ok {
			cl.Secret = strings.TrimSpace(s)
		}
	}
	if rc.KeysFile.Set {
		// Public keys: readable by anyone is fine.
		if data, abs, ok := c.readFile(rc.KeysFile, cp+".keys_file"); ok {
			k, err := oidc.ParseClientKeys(data)
			if err != nil {
				c.add(rc.KeysFile.Line, "%s.keys_file: %s: %v", cp, showPath(rc.KeysFile.V, abs), err)
			}
			cl.Keys = k
		}
	}
	if !rc.RedirectURIs.Set || len(rc.RedirectURIs.V) == 0 {
		c.add(rc.At.Line, "%s.redirect_uris: at least one is required, exactly as the relying party sends it", cp)
	}
	for j, u := range rc.RedirectURIs.V {
		cl.RedirectURIs = append(cl.RedirectURIs, u.V)
		if err := (oidc.Client{ID: "x", RedirectURIs: []string{u.V}}).Check(); err != nil {
			c.add(u.Line, "%s.redirect_uris[%d]: %v", cp, j, err)
		}
	}
	for j, u := range rc.PostLogoutRedirectURIs.V {
		cl.PostLogoutRedirectURIs = append(cl.PostLogoutRedirectURIs, u.V)
		if err := (oidc.Client{ID: "x", RedirectURIs: []string{u.V}}).Check(); err != nil {
			c.add(u.Line, "%s.post_logout_redirect_uris[%d]: %v", cp, j, err)
		}
	}
	for _, s := range rc.Scopes.V {
		cl.Scopes = append(cl.Scopes, s.V)
	}
	if len(c.problems) > before {
		return cl, false
	}
	if err := cl.Check(); err != nil {
		c.add(rc.At.Line, "%s: %v", cp, err)
		return cl, false
	}
	return cl, true
}
