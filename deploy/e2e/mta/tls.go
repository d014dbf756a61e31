package mta

import (
	"bufio"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// StartTLS sends STARTTLS and, if the server answers 220, runs the TLS
// handshake (certificates are not verified: the test MTAs use a
// self-signed one) and carries on over TLS. It returns the reply to
// STARTTLS; the client must send EHLO again, as RFC 3207 requires.
func (c *Client) StartTLS() Reply {
	c.t.Helper()
	r := c.Cmd("STARTTLS")
	if r.Code != 220 {
		return r
	}
	tc := tls.Client(c.conn, &tls.Config{InsecureSkipVerify: true, MinVersion: tls.VersionTLS12})
	tc.SetDeadline(time.Now().Add(c.Timeout))
	if err := tc.Handshake(); err != nil {
		c.t.Fatalf("smtp: TLS handshake: %v", err)
	}
	c.conn = tc
	c.r = bufio.NewReader(tc)
	return r
}

// TLSFiles is a self-signed server certificate and its key, as PEM files
// an MTA can read.
type TLSFiles struct {
	Cert, Key string
	Dir       string // the directory holding both
}

// NewTLSFiles writes a fresh self-signed certificate for host into a new
// directory (0755, files root-owned, the key 0600: Sendmail refuses a
// key others can read). Removed at cleanup.
func NewTLSFiles(t testing.TB, host string) TLSFiles {
	t.Helper()
	dir := instanceDir(t, "tls")
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: host},
		DNSNames:              []string{host},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IsCA:                  true,
		BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	f := TLSFiles{Cert: filepath.Join(dir, "cert.pem"), Key: filepath.Join(dir, "key.pem"), Dir: dir}
	if err := os.WriteFile(f.Cert, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(f.Key, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}), 0o600); err != nil {
		t.Fatal(err)
	}
	return f
}

// PostfixTLS are main.cf settings offering STARTTLS with f and recording
// the TLS parameters in Received (smtpd_tls_received_header).
func (f TLSFiles) PostfixTLS() map[string]string {
	return map[string]string{
		"smtpd_tls_security_level":  "may",
		"smtpd_tls_cert_file":       f.Cert,
		"smtpd_tls_key_file":        f.Key,
		"smtpd_tls_received_header": "yes",
		"smtpd_tls_loglevel":        "1",
	}
}

// SendmailTLS are .mc lines offering STARTTLS with f (Sendmail writes
// the TLS parameters into Received by default).
func (f TLSFiles) SendmailTLS() []string {
	return []string{
		"define(`confSERVER_CERT', `" + f.Cert + "')dnl",
		"define(`confSERVER_KEY', `" + f.Key + "')dnl",
		"define(`confCACERT_PATH', `" + f.Dir + "')dnl",
		"define(`confCACERT', `" + f.Cert + "')dnl",
		// The files live under $TMPDIR, world-writable but sticky:
		// without TrustStickyBit Sendmail calls them unsafe and offers
		// no TLS. This redefines the harness's own list (sendmail.go),
		// so it repeats it.
		"define(`confDONT_BLAME_SENDMAIL', `MapInUnsafeDirPath, ClassFileInUnsafeDirPath, HelpFileInUnsafeDirPath, TrustStickyBit')dnl",
	}
}
