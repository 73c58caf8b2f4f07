package oidc

import (
	"fmt"
	"net/http"
	"slices"
	"time"
)

// discoveryDoc is the OpenID Provider Metadata (OpenID Connect Discovery
// 1.0 §3) this provider announces.
type discoveryDoc struct {
	Issuer                            string   `json:"issuer"`
	AuthorizationEndpoint             string   `json:"authorization_endpoint"`
	TokenEndpoint                     string   `json:"token_endpoint"`
	UserinfoEndpoint                  string   `json:"userinfo_endpoint"`
	JWKSURI                           string   `json:"jwks_uri"`
	EndSessionEndpoint                string   `json:"end_session_endpoint"`
	ResponseTypesSupported            []string `json:"response_types_supported"`
	ResponseModesSupported            []string `json:"response_modes_supported"`
	GrantTypesSupported               []string `json:"grant_types_supported"`
	SubjectTypesSupported             []string `json:"subject_types_supported"`
	IDTokenSigningAlgValuesSupported  []string `json:"id_token_signing_alg_values_supported"`
	CodeChallengeMethodsSupported     []string `json:"code_challenge_methods_supported"`
	TokenEndpointAuthMethodsSupported []string `json:"token_endpoint_auth_methods_supported"`
	// The algorithms of private_key_jwt assertions, when a client uses
	// it.
	TokenEndpointAuthSigningAlgValuesSupported []string `json:"token_endpoint_auth_signing_alg_values_supported,omitempty"`
	ScopesSupported                            []string `json:"scopes_supported"`
	ClaimsSupported                            []string `json:"claims_supported"`
	PromptValuesSupported                      []string `json:"prompt_values_supported"`
	// RFC 9207: authorization responses carry iss.
	AuthorizationResponseISSParameterSupported bool `json:"authorization_response_iss_parameter_supported"`
	RequestParameterSupported                  bool `json:"request_parameter_supported"`
	RequestURIParameterSupported               bool `json:"request_uri_parameter_supported"`
	ClaimsParameterSupported                   bool `json:"claims_parameter_supported"`
}

// Discovery serves /.well-known/openid-configuration. The signing
// algorithms listed are those of the published keys (the configured one,
// and the previous one while it is published after a change).
func (p *Provider) Discovery() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !allow(w, r, http.MethodGet, http.MethodHead) {
			return
		}
		algs := []string{p.cfg.SigningAlg}
		if ks, err := p.keys(r.Context()); err == nil {
			algs = ks.algs
		}
		var auth, authAlgs []string
		grants := []string{"authorization_code"}
		for _, c := range p.cfg.Clients {
			if !slices.Contains(auth, c.TokenAuth) {
				auth = append(auth, c.TokenAuth)
			}
			if c.RefreshTokens && !slices.Contains(grants, "refresh_token") {
				grants = append(grants, "refresh_token")
			}
		}
		slices.Sort(auth)
		if slices.Contains(auth, AuthPrivateKeyJWT) {
			for _, a := range assertionAlgs {
				authAlgs = append(authAlgs, string(a))
			}
		}
		doc := discoveryDoc{
			Issuer:                                     p.cfg.Issuer,
			AuthorizationEndpoint:                      p.cfg.Issuer + PathAuthorize,
			TokenEndpoint:                              p.backchannel() + PathToken,
			UserinfoEndpoint:                           p.backchannel() + PathUserInfo,
			JWKSURI:                                    p.backchannel() + PathJWKS,
			EndSessionEndpoint:                         p.cfg.Issuer + PathLogout,
			ResponseTypesSupported:                     []string{"code"},
			ResponseModesSupported:                     []string{"query"},
			GrantTypesSupported:                        grants,
			SubjectTypesSupported:                      []string{"public"},
			IDTokenSigningAlgValuesSupported:           algs,
			CodeChallengeMethodsSupported:              []string{"S256"},
			TokenEndpointAuthMethodsSupported:          auth,
			TokenEndpointAuthSigningAlgValuesSupported: authAlgs,
			ScopesSupported:                            supportedScopes,
			ClaimsSupported:                            claimsSupported,
			PromptValuesSupported:                      []string{"none", "login", "consent", "select_account"},
			AuthorizationResponseISSParameterSupported: true,
		}
		// Public: any page may read it; cached briefly, as the
		// algorithms may change with the keys.
		w.Header().Set("Access-Control-Allow-Origin", "*")
		w.Header().Set("Cache-Control", "public, max-age=300")
		writeJSON(w, http.StatusOK, doc)
	})
}

// JWKS serves the published public keys. Relying parties may cache them for
// as long as a node does (a new key is published before it signs, for
// longer than that); with keys from files, five minutes.
func (p *Provider) JWKS() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !allow(w, r, http.MethodGet, http.MethodHead) {
			return
		}
		ks, err := p.keys(r.Context())
		if err != nil {
			p.log.Error("jwks", "outcome", "failure", "err", err.Error())
			w.Header().Set("Retry-After", "5")
			http.Error(w, "the signing keys are unavailable; try again shortly", http.StatusServiceUnavailable)
			return
		}
		maxAge := 5 * time.Minute
		if p.ring != nil {
			maxAge = p.timing.refresh
		}
		h := w.Header()
		h.Set("Access-Control-Allow-Origin", "*")
		h.Set("Cache-Control", fmt.Sprintf("public, max-age=%d", int(maxAge/time.Second)))
		h.Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusOK)
		_, _ = w.Write(ks.jwks)
	})
}
