package authnode

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"os"

	krbconfig "github.com/jcmturner/gokrb5/v8/config"
	"github.com/jcmturner/gokrb5/v8/keytab"

	"github.com/iwalb/iwalb/authnode/negotiate"
)

// KerberosFiles are a node's keytab and krb5.conf, parsed. The config
// package parses them while it checks a configuration and hands them over
// in Config.Files, so that each file is parsed once, by one parser.
type KerberosFiles struct {
	Keytab *keytab.Keytab
	// KeytabSum is the SHA-256 of the keytab file's content: the keytab
	// watch reloads the file when it changes.
	KeytabSum [sha256.Size]byte
	Krb5      *krbconfig.Config
}

// ParseKrb5Conf parses a krb5.conf's content as the node uses it.
// Directives gokrb5 does not support (include, say) are skipped, as MIT
// Kerberos skips what it does not know; anything else malformed is an
// error.
func ParseKrb5Conf(data []byte) (*krbconfig.Config, error) {
	c, err := krbconfig.NewFromString(string(data))
	if err != nil && !errors.As(err, new(krbconfig.UnsupportedDirective)) {
		return nil, err
	}
	return c, nil
}

// kerberosFiles returns cfg's parsed files: cfg.Files when the caller
// parsed them, else the files read now.
func kerberosFiles(cfg *Config) (*KerberosFiles, error) {
	if cfg.Files != nil {
		if cfg.Files.Keytab == nil || cfg.Files.Krb5 == nil {
			return nil, errors.New("parsed Kerberos files lack the keytab or krb5.conf")
		}
		return cfg.Files, nil
	}
	kt, sum, err := negotiate.ReadKeytab(cfg.Keytab)
	if err != nil {
		return nil, err
	}
	data, err := os.ReadFile(cfg.Krb5Conf)
	if err != nil {
		return nil, fmt.Errorf("load krb5.conf: %w", err)
	}
	krb5, err := ParseKrb5Conf(data)
	if err != nil {
		return nil, fmt.Errorf("load krb5.conf %s: %w", cfg.Krb5Conf, err)
	}
	return &KerberosFiles{Keytab: kt, KeytabSum: sum, Krb5: krb5}, nil
}
