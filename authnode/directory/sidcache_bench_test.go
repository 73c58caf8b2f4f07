package directory

import (
	"context"
	"fmt"
	"testing"
)

// BenchmarkGroupNamesWarm is the directory's own CPU in a warm login: the
// ticket's group SIDs sorted and deduplicated, each named from the SID
// cache, the names sorted; no LDAP request is sent.
//
//	go test -run '^$' -bench GroupNamesWarm -benchmem ./authnode/directory/
func BenchmarkGroupNamesWarm(b *testing.B) {
	for _, n := range []int{40, 1100} {
		b.Run(fmt.Sprint(n, "-groups"), func(b *testing.B) {
			const domain = "S-1-5-21-1004336348-1177238915-682003330"
			d, err := New(Config{URL: "ldaps://dc1.example.test", BindDN: "CN=svc", BindPassword: "pw", BaseDN: "DC=example,DC=test"})
			if err != nil {
				b.Fatal(err)
			}
			var sids []string
			names := map[string]string{}
			for i := range n {
				s := fmt.Sprintf("%s-%d", domain, 5000+i)
				sids = append(sids, s)
				names[s] = fmt.Sprintf("group-%04d", i)
			}
			sids = append(sids, "S-1-18-1")
			d.sids.mu.Lock()
			d.sids.put(sids, names, d.now())
			d.sids.mu.Unlock()
			b.ReportAllocs()
			b.ResetTimer()
			for range b.N {
				var ops int
				got, err := d.groupNames(context.Background(), uniqueSortedSIDs(sids, domain), domain, &ops)
				if err != nil || len(got) != n || ops != 0 {
					b.Fatalf("%d names, %d operations, %v", len(got), ops, err)
				}
			}
		})
	}
}
