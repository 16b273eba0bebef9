package auth

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"strings"
)

// ErrBadKey is returned (wrapped) for a public key that cannot be read or
// cannot verify RS256 or ES256 tokens.
var ErrBadKey = errors.New("unusable public key")

// minRSABits is the smallest RSA modulus accepted, per current NIST guidance.
const minRSABits = 2048

// ParsePublicKeyPEM reads the one public key in data: a "PUBLIC KEY" block
// (PKIX, RSA or ECDSA), an "RSA PUBLIC KEY" block (PKCS #1) or a
// "CERTIFICATE" whose key is used. The key must suit RS256 (RSA, at least
// 2048 bits) or ES256 (ECDSA on P-256). Data holding several PEM blocks is an
// error; ParsePublicKeysPEM reads those.
func ParsePublicKeyPEM(data []byte) (crypto.PublicKey, error) {
	keys, err := ParsePublicKeysPEM(data)
	if err != nil {
		return nil, err
	}
	if len(keys) > 1 {
		return nil, fmt.Errorf("auth: %w: %d PEM blocks where one was expected", ErrBadKey, len(keys))
	}
	return keys[0], nil
}

// ParsePublicKeysPEM reads every PEM block in data as ParsePublicKeyPEM reads
// one, so that one file can hold the current and the next key during
// rotation. Text around the blocks is ignored; data without any block is an
// error.
func ParsePublicKeysPEM(data []byte) ([]crypto.PublicKey, error) {
	var keys []crypto.PublicKey
	for {
		block, rest := pem.Decode(data)
		if block == nil {
			break
		}
		data = rest
		key, err := parsePEMBlock(block)
		if err != nil {
			return nil, fmt.Errorf("auth: %w: PEM block %d (%s): %w", ErrBadKey, len(keys)+1, block.Type, err)
		}
		if err := checkPublicKey(key); err != nil {
			return nil, fmt.Errorf("auth: %w: PEM block %d (%s): %w", ErrBadKey, len(keys)+1, block.Type, err)
		}
		keys = append(keys, key)
	}
	if len(keys) == 0 {
		return nil, fmt.Errorf("auth: %w: no PEM block found", ErrBadKey)
	}
	return keys, nil
}

func parsePEMBlock(block *pem.Block) (crypto.PublicKey, error) {
	switch block.Type {
	case "PUBLIC KEY":
		return x509.ParsePKIXPublicKey(block.Bytes)
	case "RSA PUBLIC KEY":
		return x509.ParsePKCS1PublicKey(block.Bytes)
	case "CERTIFICATE":
		cert, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, err
		}
		return cert.PublicKey, nil
	}
	if strings.Contains(block.Type, "PRIVATE KEY") {
		return nil, errors.New("this is a private key; give the server the public key only")
	}
	return nil, fmt.Errorf("unsupported PEM type %q (want PUBLIC KEY, RSA PUBLIC KEY or CERTIFICATE)", block.Type)
}

// checkPublicKey accepts only keys that RS256 or ES256 can use, so that a
// wrong key fails at startup instead of failing every token.
func checkPublicKey(key crypto.PublicKey) error {
	switch k := key.(type) {
	case *rsa.PublicKey:
		if k == nil || k.N == nil {
			return errors.New("nil RSA key")
		}
		if bits := k.N.BitLen(); bits < minRSABits {
			return fmt.Errorf("RSA key has %d bits, want at least %d", bits, minRSABits)
		}
		return nil
	case *ecdsa.PublicKey:
		if k == nil || k.Curve != elliptic.P256() {
			return errors.New("ECDSA key is not on P-256, which ES256 requires")
		}
		return nil
	case ed25519.PublicKey:
		return errors.New("unsupported key type ed25519 (EdDSA); use RSA (RS256) or ECDSA P-256 (ES256)")
	}
	return fmt.Errorf("unsupported key type %T; use RSA (RS256) or ECDSA P-256 (ES256)", key)
}
