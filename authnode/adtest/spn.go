package adtest

import (
	"fmt"
	"os"
	"os/exec"
	"testing"
)

// uncheckedSPN adds ("add") or deletes ("delete") one servicePrincipalName
// value of an account by writing the domain partition of the DC's database
// with no ldb module loaded, so that samldb's uniqueness check does not
// run. The partition's file and its store (tdb or mdb) are read from
// sam.ldb's @PARTITION record; the ldb backend keeps the indexes, so LDAP
// searches and the KDC see the value. A delete of a value or an account
// that is not there is not an error: the value is gone either way.
// Arguments: smb.conf, sAMAccountName, SPN, operation.
const uncheckedSPN = `
import sys, ldb
from samba.param import LoadParm
conf, account, spn, op = sys.argv[1:5]
lp = LoadParm()
lp.load(conf)
domain = "DC=" + ",DC=".join(lp.get("realm").upper().split("."))
top = ldb.Ldb(url="tdb://" + lp.private_path("sam.ldb"), options=["modules:"], flags=ldb.FLG_RDONLY)
part = top.search(base="@PARTITION", scope=ldb.SCOPE_BASE, attrs=["partition", "backendStore"])[0]
store = str(part.get("backendStore", idx=0) or "tdb")
files = [str(v).split(":", 1)[1] for v in part["partition"] if str(v).split(":", 1)[0].upper() == domain.upper()]
if len(files) != 1:
    sys.exit("no partition %s in @PARTITION: %s" % (domain, [str(v) for v in part["partition"]]))
db = ldb.Ldb(url=store + "://" + lp.private_path(files[0]), options=["modules:"])
res = db.search(base=domain, scope=ldb.SCOPE_SUBTREE, expression="(sAMAccountName=%s)" % ldb.binary_encode(account), attrs=["dn"])
if len(res) != 1:
    if op == "delete":
        sys.exit(0)
    sys.exit("%d accounts named %s in %s" % (len(res), account, files[0]))
m = ldb.Message()
m.dn = res[0].dn
m["servicePrincipalName"] = ldb.MessageElement(spn, ldb.FLAG_MOD_ADD if op == "add" else ldb.FLAG_MOD_DELETE, "servicePrincipalName")
try:
    db.modify(m)
except ldb.LdbError as e:
    if op == "delete" and e.args[0] == ldb.ERR_NO_SUCH_ATTRIBUTE:
        sys.exit(0)
    raise
`

// AddSPNUnchecked gives the account named sam (sAMAccountName) the SPN spn
// even when another account already has it, which the DC refuses through
// LDAP and samba-tool (as Windows does since 2012 R2): the value is
// written into the DC's domain partition around samldb's uniqueness
// check, as older domains and tools that write around the check leave
// duplicates behind. It is deleted again when the test ends (also when
// the account is gone by then). It needs root (the DC's files are root's)
// and Samba's Python bindings for /usr/bin/python3 (Debian's
// python3-samba, which the DC's packages bring); without root it skips
// the test. env["AD_NTLM_AUTH_CONF"] is the DC's smb.conf.
func AddSPNUnchecked(t testing.TB, env map[string]string, sam, spn string) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("writes the test DC's database: root only (scripts/test runs as root)")
	}
	write := func(op string) error {
		out, err := exec.Command("/usr/bin/python3", "-c", uncheckedSPN, env["AD_NTLM_AUTH_CONF"], sam, spn, op).CombinedOutput()
		if err != nil {
			return fmt.Errorf("%s %s on %s in the DC's database: %v\n%s", op, spn, sam, err, out)
		}
		return nil
	}
	t.Cleanup(func() {
		if err := write("delete"); err != nil {
			t.Errorf("cleanup: %v", err)
		}
	})
	if err := write("add"); err != nil {
		t.Fatal(err)
	}
}
