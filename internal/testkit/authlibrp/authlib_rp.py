"""An OpenID Connect relying party made of Debian's python3-authlib.

It exists so that a client stack no one here wrote, in another language,
signs in at iwalb's provider: if it and go-oidc both accept what the
provider issues (and both refuse what they must), the provider speaks the
protocol and not merely what one library expects.

It is a two-step command, driven by the Go package beside it, because the
browser's part (the redirects, the sign-in) happens in between:

  start   discovery, then the authorization URL with PKCE (S256), state
          and nonce; prints {"url", "state", "nonce", "code_verifier"}.
  finish  the URL the browser landed on (the redirect URI with code and
          state) and the secrets of start: checks state (and iss, RFC
          9207), redeems the code at the token endpoint, verifies the ID
          token against the provider's JWKS (signature, iss, aud, exp,
          nonce, at_hash), calls userinfo; prints
          {"id_token_claims", "userinfo"}.

The client secret is read from the environment (AUTHLIB_RP_CLIENT_SECRET),
never from the command line, which any local user may read. Any failure
exits 1 with one line on stderr.

Only documented authlib APIs are used: OAuth2Session
(authlib.integrations.requests_client) for the authorization URL and the
code exchange, JsonWebKey and JsonWebToken (authlib.jose) for the
signature, CodeIDToken (authlib.oidc.core) for the claims.
"""

import argparse
import hmac
import json
import os
import re
import sys
import time
from urllib.parse import parse_qs, urlsplit

import urllib3.util.connection
from authlib.common.security import generate_token
from authlib.integrations.requests_client import OAuth2Session
from authlib.jose import JsonWebKey, JsonWebToken
from authlib.oidc.core import CodeIDToken

SCOPES = "openid profile email groups"
# The algorithms the provider may sign with. Naming them keeps "none" and
# the HMAC algorithms out: a public key can never serve as an HMAC secret.
ALGORITHMS = ["ES256", "RS256"]
TIMEOUT = 10  # seconds, for each HTTP request
LEEWAY = 60  # seconds of clock skew allowed on exp and iat


class Failure(Exception):
    """A reason to refuse the sign-in, said on one line."""


def install_resolve(entries):
    """Dial ADDR for HOST:PORT, as curl --resolve does.

    urllib3 dials through urllib3.util.connection.create_connection with the
    request's host; only that call is redirected, so the TLS handshake still
    sends HOST as SNI and checks the certificate against HOST. Tests name
    hosts (sso.example.test) that no DNS knows.
    """
    table = {}
    for e in entries:
        m = re.fullmatch(r"(\[[^\]]+\]|[^:\[\]]+):([0-9]{1,5}):(\[[^\]]+\]|[^\[\]]+)", e)
        if not m:
            raise Failure("--resolve wants HOST:PORT:ADDR, got %r" % e)
        host, port, addr = m.groups()
        table[(host.strip("[]").rstrip(".").lower(), int(port))] = addr.strip("[]")
    if not table:
        return
    original = urllib3.util.connection.create_connection

    def create_connection(address, *args, **kwargs):
        host, port = address
        addr = table.get((str(host).rstrip(".").lower(), int(port)))
        if addr is not None:
            address = (addr, port)
        return original(address, *args, **kwargs)

    urllib3.util.connection.create_connection = create_connection


def session(args, secret, **kwargs):
    s = OAuth2Session(
        client_id=args.client_id,
        client_secret=secret or None,
        token_endpoint_auth_method=args.auth_method,
        scope=SCOPES,
        redirect_uri=args.redirect_uri,
        code_challenge_method="S256",
        default_timeout=TIMEOUT,
        **kwargs,
    )
    # Only the CA file given is trusted, and no proxy or CA bundle from the
    # environment changes what is tested.
    s.trust_env = False
    s.verify = args.ca_file or True
    return s


def get_json(s, url, what, bearer=False):
    """GETs a JSON object; with bearer, authenticated by the session's
    access token, which is sent nowhere else. Redirects are followed, as a
    front door may send them (requests drops the token at another host)."""
    try:
        r = s.get(url, withhold_token=not bearer)
    except Exception as e:  # requests' errors have many classes
        raise Failure("%s %s: %s" % (what, url, e))
    if r.status_code != 200:
        raise Failure("%s %s: HTTP %d: %.200s" % (what, url, r.status_code, r.text.strip()))
    try:
        v = r.json()
    except ValueError:
        raise Failure("%s %s: not JSON" % (what, url))
    if not isinstance(v, dict):
        raise Failure("%s %s: not a JSON object" % (what, url))
    return v


def discover(s, issuer):
    """Reads the provider's metadata and checks it names issuer exactly
    (OpenID Connect Discovery 1.0 §4.3), so that no other provider's
    document is taken for it."""
    meta = get_json(s, issuer + "/.well-known/openid-configuration", "discovery")
    if meta.get("issuer") != issuer:
        raise Failure("discovery names issuer %r, not %r" % (meta.get("issuer"), issuer))
    for k in ("authorization_endpoint", "token_endpoint", "jwks_uri", "userinfo_endpoint"):
        v = meta.get(k)
        if not isinstance(v, str) or not v.startswith("https://"):
            raise Failure("discovery: %s is %r, not an https URL" % (k, v))
    if "S256" not in meta.get("code_challenge_methods_supported", []):
        raise Failure("discovery: the provider does not offer PKCE S256")
    return meta


def cmd_start(args, secret):
    with session(args, secret) as s:
        meta = discover(s, args.issuer)
        # authlib's tokens (secrets.SystemRandom, 62 characters): about
        # 285 bits for the verifier (RFC 7636 wants 43 to 128
        # characters), 190 for state and nonce.
        verifier = generate_token(48)
        nonce = generate_token(32)
        url, state = s.create_authorization_url(
            meta["authorization_endpoint"], state=generate_token(32),
            code_verifier=verifier, nonce=nonce)
    return {"url": url, "state": state, "nonce": nonce, "code_verifier": verifier}


def one(q, name):
    v = q.get(name, [])
    if len(v) > 1:
        raise Failure("the callback carries %s %d times" % (name, len(v)))
    return v[0] if v else None


def cmd_finish(args, secret):
    cb = urlsplit(args.callback_url)
    want = urlsplit(args.redirect_uri)
    if (cb.scheme, cb.netloc, cb.path) != (want.scheme, want.netloc, want.path):
        raise Failure("the callback is not at the redirect URI %s" % args.redirect_uri)
    q = parse_qs(cb.query, keep_blank_values=True)
    state = one(q, "state")
    # State first: until it matches, nothing in the answer is from the
    # request this flow made, its error included.
    if state is None or not hmac.compare_digest(state.encode(), args.state.encode()):
        raise Failure("state mismatch: the answer is not to this flow's request")
    if one(q, "error") is not None:
        raise Failure("the provider answered %s: %s" % (one(q, "error"), one(q, "error_description") or ""))
    iss = one(q, "iss")
    if iss is not None and iss != args.issuer:
        raise Failure("the authorization response names issuer %r (RFC 9207), not %r" % (iss, args.issuer))
    if not one(q, "code"):
        raise Failure("the callback carries no code")

    with session(args, secret, state=args.state) as s:
        meta = discover(s, args.issuer)
        try:
            # authlib checks state again, and sends the verifier and the
            # redirect URI with the code.
            token = s.fetch_token(
                meta["token_endpoint"], authorization_response=args.callback_url,
                code_verifier=args.code_verifier, state=args.state)
        except Exception as e:
            raise Failure("token request: %s: %s" % (type(e).__name__, e))
        raw = token.get("id_token")
        if not raw or not token.get("access_token"):
            raise Failure("the token response lacks id_token or access_token")
        if str(token.get("token_type", "")).lower() != "bearer":
            raise Failure("token_type %r, want Bearer" % token.get("token_type"))

        jwks = get_json(s, meta["jwks_uri"], "jwks")
        try:
            keys = JsonWebKey.import_key_set(jwks)
        except Exception as e:
            raise Failure("jwks: %s" % e)
        options = {
            "iss": {"essential": True, "value": args.issuer},
            "aud": {"essential": True, "value": args.client_id},
            "sub": {"essential": True},
            "exp": {"essential": True},
            "iat": {"essential": True},
            "nonce": {"essential": True, "value": args.nonce},
        }
        params = {"nonce": args.nonce, "client_id": args.client_id, "access_token": token["access_token"]}
        try:
            claims = JsonWebToken(ALGORITHMS).decode(
                raw, keys, claims_cls=CodeIDToken, claims_options=options, claims_params=params)
            claims.validate(now=int(time.time()), leeway=LEEWAY)
        except Exception as e:
            raise Failure("ID token: %s: %s" % (type(e).__name__, e))
        # A list aud of one is allowed; more audiences than this client
        # would need azp, which the provider never sends.
        aud = claims["aud"]
        if isinstance(aud, list) and aud != [args.client_id]:
            raise Failure("ID token: aud %r is not this client alone" % (aud,))

        userinfo = get_json(s, meta["userinfo_endpoint"], "userinfo", bearer=True)
        # OpenID Connect Core §5.3.2: a userinfo answer about another
        # subject must not be used.
        if userinfo.get("sub") != claims["sub"]:
            raise Failure("userinfo sub %r is not the ID token's %r" % (userinfo.get("sub"), claims["sub"]))
    return {"id_token_claims": dict(claims), "userinfo": userinfo}


class ArgumentParser(argparse.ArgumentParser):
    """Says a usage error on one line, as every other failure."""

    def error(self, message):
        raise Failure("usage: " + message)


def main(argv):
    p = ArgumentParser(prog="authlib_rp", description=__doc__.split("\n")[0])
    p.add_argument("command", choices=["start", "finish"])
    p.add_argument("--issuer", required=True)
    p.add_argument("--client-id", required=True)
    p.add_argument("--auth-method", default="client_secret_basic",
                   choices=["client_secret_basic", "client_secret_post", "none"])
    p.add_argument("--redirect-uri", required=True)
    p.add_argument("--ca-file", default="", help="CA file the provider's certificate chains to")
    p.add_argument("--resolve", action="append", default=[], metavar="HOST:PORT:ADDR")
    p.add_argument("--callback-url", help="finish: where the browser landed")
    p.add_argument("--state")
    p.add_argument("--nonce")
    p.add_argument("--code-verifier")
    args = p.parse_args(argv)
    secret = os.environ.get("AUTHLIB_RP_CLIENT_SECRET", "")
    if (args.auth_method == "none") != (secret == ""):
        raise Failure("auth method %s %s a client secret" % (
            args.auth_method, "takes no" if secret else "needs"))
    install_resolve(args.resolve)
    if args.command == "start":
        out = cmd_start(args, secret)
    else:
        for name in ("callback_url", "state", "nonce", "code_verifier"):
            if not getattr(args, name):
                raise Failure("finish needs --%s" % name.replace("_", "-"))
        out = cmd_finish(args, secret)
    json.dump(out, sys.stdout)
    sys.stdout.write("\n")


if __name__ == "__main__":
    try:
        main(sys.argv[1:])
    except Failure as e:
        print(str(e).replace("\n", " "), file=sys.stderr)
        sys.exit(1)
    except Exception as e:  # an unexpected error is still one line
        print("%s: %s" % (type(e).__name__, str(e).replace("\n", " ")), file=sys.stderr)
        sys.exit(1)
