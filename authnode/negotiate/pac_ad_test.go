package negotiate

import (
	"bytes"
	"errors"
	"math/rand/v2"
	"testing"

	"github.com/jcmturner/gokrb5/v8/messages"

	"github.com/iwalb/iwalb/authnode/adtest"
)

// TestADPACMatchesGokrb5 decodes the PACs of fresh tickets of the test
// domain, signed by its KDC, with parsePAC and with gokrb5: alice (a few
// groups), dave (nested groups) and carol (1,100 groups). They must read
// the same; a group RID changed by one bit must fail the signature; and
// changed at random and signed again with the service key, the PACs must
// get the same verdict from both (see compareDecoders).
func TestADPACMatchesGokrb5(t *testing.T) {
	env := adtest.Env(t)
	kt := adKeytab(t, env)
	rng := rand.New(rand.NewPCG(8, 2))
	for _, u := range []struct {
		name, password    string
		groups, mutations int
	}{
		{"alice", env["AD_ALICE_PASSWORD"], 3, 200},
		{"dave", env["AD_DAVE_PASSWORD"], 4, 200},
		{"carol", env["AD_CAROL_PASSWORD"], adtest.Int(t, env, "AD_CAROL_GROUPS"), 50},
	} {
		t.Run(u.name, func(t *testing.T) {
			cl := adtest.Login(t, env, u.name, u.password)
			var ap messages.APReq
			if err := ap.Unmarshal(parse(adtest.NegotiateBlob(t, cl, "HTTP/auth1.example.test")).apReq); err != nil {
				t.Fatal(err)
			}
			tk, err := NewValidator(kt, Options{}).decryptTicket(&ap.Ticket)
			if err != nil {
				t.Fatal(err)
			}
			b, ok := ticketPAC(&ap.Ticket)
			if !ok {
				t.Fatal("ticket without a PAC")
			}
			var v verdicts
			compareDecoders(t, u.name, b, tk.key, &v)
			if v.bothAccept != 1 {
				t.Fatalf("the KDC's PAC is not accepted by both decoders: %+v", v)
			}
			got, _ := ourView(b, tk.key)
			if want := adtest.ObjectSID(t, env, u.name); got.UserSID != want || len(got.GroupSIDs) < u.groups {
				t.Errorf("user SID %s with %d group SIDs; want %s's objectSid %s and at least %d", got.UserSID, len(got.GroupSIDs), u.name, want, u.groups)
			}

			l := layoutOf(t, b)
			tampered := bytes.Clone(b)
			tampered[l.groups+len(l.k.groups)-8] ^= 1 // the last group's RID
			if _, err := pacIdentity(tampered, tk.key); !errors.Is(err, errPACSignature) {
				t.Errorf("a RID changed: %v, want %v", err, errPACSignature)
			}
			if _, err := gokrb5View(tampered, tk.key); err == nil {
				t.Error("a RID changed: gokrb5 accepts it")
			}

			v = differential(t, u.name, b, tk.key, u.mutations, rng)
			t.Logf("%d changed PACs: %+v", u.mutations, v)
			if v.bothAccept == 0 {
				t.Errorf("no changed PAC accepted by both: %+v", v)
			}
		})
	}
}
