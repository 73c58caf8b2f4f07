package authnode

import "crypto/sha256"

// sha256Sum is the SHA-256 of s (API keys are compared by it).
func sha256Sum(s string) [sha256.Size]byte { return sha256.Sum256([]byte(s)) }
