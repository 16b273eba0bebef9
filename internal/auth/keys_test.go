package auth_test

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"math/big"
	"strings"
	"testing"
	"time"

	"github.com/huddle-rt/huddle/internal/auth"
)

func TestParsePublicKeyPEM(t *testing.T) {
	rsaPub, ecPub := &rsaKey().PublicKey, &ecKey().PublicKey
	edPub, _, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	pkcs1 := pem.EncodeToMemory(&pem.Block{Type: "RSA PUBLIC KEY", Bytes: x509.MarshalPKCS1PublicKey(rsaPub)})
	ecDER, err := x509.MarshalECPrivateKey(ecKey())
	if err != nil {
		t.Fatal(err)
	}
	ecPriv := pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: ecDER})
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "huddle test"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
	}
	certDER, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, ecPub, ecKey())
	if err != nil {
		t.Fatal(err)
	}
	cert := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: certDER})

	tests := []struct {
		name    string
		data    []byte
		want    any    // the key expected, compared with Equal
		wantErr string // substring; "" means success
	}{
		{name: "RSA PKIX", data: pkixPEM(t, rsaPub), want: rsaPub},
		{name: "RSA PKCS1", data: pkcs1, want: rsaPub},
		{name: "ECDSA PKIX", data: pkixPEM(t, ecPub), want: ecPub},
		{name: "certificate", data: cert, want: ecPub},
		{name: "text around block", data: append(append([]byte("# current key\n"), pkixPEM(t, ecPub)...), "trailer\n"...), want: ecPub},
		{name: "two blocks", data: append(pkixPEM(t, rsaPub), pkixPEM(t, ecPub)...), wantErr: "2 PEM blocks"},
		{name: "empty", data: nil, wantErr: "no PEM block"},
		{name: "not PEM", data: []byte("-----BEGIN nonsense"), wantErr: "no PEM block"},
		{name: "private key", data: ecPriv, wantErr: "private key"},
		{name: "unknown type", data: pem.EncodeToMemory(&pem.Block{Type: "FOO", Bytes: []byte{1}}), wantErr: "unsupported PEM type"},
		{name: "garbage DER", data: pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: []byte{1, 2, 3}}), wantErr: "PEM block 1"},
		{name: "ed25519", data: pkixPEM(t, edPub), wantErr: "ed25519"},
		{name: "P-384", data: pkixPEM(t, &mustEC(elliptic.P384()).PublicKey), wantErr: "P-256"},
		{name: "RSA 1024", data: pkixPEM(t, &mustRSA(1024).PublicKey), wantErr: "1024 bits"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := auth.ParsePublicKeyPEM(tt.data)
			if tt.wantErr != "" {
				if !errors.Is(err, auth.ErrBadKey) || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("ParsePublicKeyPEM = %T, %v; want ErrBadKey mentioning %q", got, err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParsePublicKeyPEM: %v", err)
			}
			if k, ok := got.(interface{ Equal(crypto.PublicKey) bool }); !ok || !k.Equal(tt.want) {
				t.Errorf("ParsePublicKeyPEM = %T, want %T equal to the input", got, tt.want)
			}
		})
	}
}

func TestParsePublicKeysPEM(t *testing.T) {
	rsaPub, ecPub := &rsaKey().PublicKey, &ecKey().PublicKey
	data := bytes.Join([][]byte{pkixPEM(t, rsaPub), []byte("# next\n"), pkixPEM(t, ecPub)}, nil)
	keys, err := auth.ParsePublicKeysPEM(data)
	if err != nil {
		t.Fatal(err)
	}
	if len(keys) != 2 || !keys[0].(*rsa.PublicKey).Equal(rsaPub) || !keys[1].(*ecdsa.PublicKey).Equal(ecPub) {
		t.Fatalf("ParsePublicKeysPEM = %v", keys)
	}
	// The keys parsed are the keys New accepts.
	newAuth(t, auth.Config{PublicKeys: keys})

	bad := append(pkixPEM(t, rsaPub), pem.EncodeToMemory(&pem.Block{Type: "FOO"})...)
	if _, err := auth.ParsePublicKeysPEM(bad); !errors.Is(err, auth.ErrBadKey) || !strings.Contains(err.Error(), "PEM block 2") {
		t.Errorf("ParsePublicKeysPEM(bad second block) error = %v", err)
	}
}
