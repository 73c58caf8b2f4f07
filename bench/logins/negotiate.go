package main

import (
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/jcmturner/gofork/encoding/asn1"
	"github.com/jcmturner/gokrb5/v8/asn1tools"
	"github.com/jcmturner/gokrb5/v8/client"
	"github.com/jcmturner/gokrb5/v8/config"
	"github.com/jcmturner/gokrb5/v8/credentials"
	"github.com/jcmturner/gokrb5/v8/gssapi"
	"github.com/jcmturner/gokrb5/v8/iana/chksumtype"
	"github.com/jcmturner/gokrb5/v8/iana/flags"
	"github.com/jcmturner/gokrb5/v8/krberror"
	"github.com/jcmturner/gokrb5/v8/messages"
	"github.com/jcmturner/gokrb5/v8/spnego"
	"github.com/jcmturner/gokrb5/v8/types"
)

// credential is one account the workers log in as: with a password, or
// from a ticket cache.
type credential struct {
	user     string // as given: "alice" or "alice@EXAMPLE.TEST"
	password string
	ccache   string // path of a ccache file; then user is read from it
}

func (c credential) String() string {
	if c.ccache != "" {
		return "ccache " + c.ccache
	}
	return c.user
}

// login returns a gokrb5 client logged in as c and holding a service
// ticket for spn (fetched now, so that a wrong SPN fails before the run).
func login(c credential, conf *config.Config, realm, spn string) (*client.Client, error) {
	var cl *client.Client
	if c.ccache != "" {
		cc, err := credentials.LoadCCache(c.ccache)
		if err != nil {
			return nil, fmt.Errorf("load ccache %s: %w", c.ccache, err)
		}
		if cl, err = client.NewFromCCache(cc, conf, client.DisablePAFXFAST(true)); err != nil {
			return nil, fmt.Errorf("use ccache %s: %w", c.ccache, err)
		}
	} else {
		user, r := c.user, realm
		if i := strings.LastIndexByte(user, '@'); i >= 0 {
			user, r = c.user[:i], c.user[i+1:]
		}
		if r == "" {
			return nil, fmt.Errorf("no realm for %s: give -realm, user@REALM, or default_realm in the krb5 config", c.user)
		}
		cl = client.NewWithPassword(user, r, c.password, conf, client.DisablePAFXFAST(true))
		// A busy KDC may miss gokrb5's timeout once; a wrong password is
		// not tried again.
		var err error
		for range 3 {
			if err = cl.Login(); err == nil || !isNetworkError(err) {
				break
			}
			time.Sleep(200 * time.Millisecond)
		}
		if err != nil {
			return nil, fmt.Errorf("kerberos login as %s@%s: %w", user, r, err)
		}
	}
	if _, _, err := cl.GetServiceTicket(spn); err != nil {
		cl.Destroy()
		return nil, fmt.Errorf("service ticket for %s as %s: %w", spn, c, err)
	}
	return cl, nil
}

// isNetworkError reports whether a gokrb5 error is a failure to reach the
// KDC, as opposed to its answer.
func isNetworkError(err error) bool {
	var kerr krberror.Krberror
	return errors.As(err, &kerr) && kerr.RootCause == krberror.NetworkingError
}

// usecClock hands out authenticator times of one client principal, each
// a microsecond after the last at least. The node remembers an
// authenticator by client, time and microsecond; two workers logged in as
// the same user would otherwise now and then make two in the same
// microsecond, and the second would be refused as a replay, which no real
// browser causes at this rate.
type usecClock struct {
	mu   sync.Mutex
	last int64 // Unix microseconds
}

func (c *usecClock) next(now time.Time) int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.last = max(now.UnixMicro(), c.last+1)
	return c.last
}

// blobMaker makes Negotiate headers for one worker: each a fresh
// authenticator for the service ticket the client holds, as a browser
// makes for every login.
type blobMaker struct {
	cl     *client.Client
	spn    string
	clock  *usecClock
	mutual bool
}

// gssKRB5 is the DER of the Kerberos 5 mechanism OID (RFC 1964).
var gssKRB5 = []byte{0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x12, 0x01, 0x02, 0x02}

// header returns the value of an Authorization header: "Negotiate " and a
// SPNEGO NegTokenInit with a Kerberos AP-REQ, as gokrb5's
// spnego.SPNEGOClient(...).InitSecContext() makes it, but with the
// authenticator time from the clock.
func (m *blobMaker) header() (string, error) {
	tkt, key, err := m.cl.GetServiceTicket(m.spn)
	if err != nil {
		return "", fmt.Errorf("service ticket for %s: %w", m.spn, err)
	}
	creds := m.cl.Credentials
	auth, err := types.NewAuthenticator(creds.Domain(), creds.CName())
	if err != nil {
		return "", err
	}
	us := m.clock.next(time.Now())
	auth.CTime = time.UnixMicro(us).UTC().Truncate(time.Second)
	auth.Cusec = int(us % 1e6)
	// RFC 4121 4.1.1 checksum: 16-byte channel binding (none) and flags.
	cksum := make([]byte, 24)
	binary.LittleEndian.PutUint32(cksum, 16)
	gssFlags := uint32(gssapi.ContextFlagInteg | gssapi.ContextFlagConf)
	if m.mutual {
		gssFlags |= gssapi.ContextFlagMutual
	}
	binary.LittleEndian.PutUint32(cksum[20:], gssFlags)
	auth.Cksum = types.Checksum{CksumType: chksumtype.GSSAPI, Checksum: cksum}
	ap, err := messages.NewAPReq(tkt, key, auth)
	if err != nil {
		return "", fmt.Errorf("make AP-REQ: %w", err)
	}
	if m.mutual {
		types.SetFlag(&ap.APOptions, flags.APOptionMutualRequired)
	}
	apb, err := ap.Marshal()
	if err != nil {
		return "", fmt.Errorf("marshal AP-REQ: %w", err)
	}
	// GSS-API initial context token: mechanism OID, TOK_ID 01 00, AP-REQ.
	mech := make([]byte, 0, len(gssKRB5)+2+len(apb))
	mech = append(append(append(mech, gssKRB5...), 0x01, 0x00), apb...)
	tok := spnego.SPNEGOToken{Init: true, NegTokenInit: spnego.NegTokenInit{
		MechTypes:      []asn1.ObjectIdentifier{gssapi.OIDKRB5.OID()},
		MechTokenBytes: asn1tools.AddASNAppTag(mech, 0),
	}}
	b, err := tok.Marshal()
	if err != nil {
		return "", fmt.Errorf("marshal SPNEGO token: %w", err)
	}
	return "Negotiate " + base64.StdEncoding.EncodeToString(b), nil
}
