package authn

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
	"strings"
)

// jwk is one verification key of a key set, of the one type its algorithm needs.
type jwk struct {
	kid string
	alg string // the only algorithm it may verify: HS256, RS256 or ES256
	key any    // []byte, *rsa.PublicKey or *ecdsa.PublicKey
}

// keySet is a parsed JWKS document; read-only once built.
type keySet struct {
	keys  []jwk
	byKid map[string][]int // indexes into keys
}

// rawJWK is a JWK as JSON (RFC 7517, 7518).
type rawJWK struct {
	Kty string `json:"kty"`
	Kid string `json:"kid"`
	Use string `json:"use"`
	Alg string `json:"alg"`
	// RSA
	N string `json:"n"`
	E string `json:"e"`
	// EC
	Crv string `json:"crv"`
	X   string `json:"x"`
	Y   string `json:"y"`
	// oct
	K string `json:"k"`
}

// parseJWKS reads a JWKS document ({"keys":[...]}). Keys of other types (OKP, EC curves
// other than P-256) and keys for encryption ("use":"enc") are skipped; a key of a
// supported type that is malformed or weak fails the whole document, so a typo does
// not silently drop a key.
func parseJWKS(data []byte) (*keySet, error) {
	var doc struct {
		Keys []json.RawMessage `json:"keys"`
	}
	if err := json.Unmarshal(data, &doc); err != nil {
		return nil, fmt.Errorf("jwks: not a JSON key set: %v", err)
	}
	if doc.Keys == nil {
		return nil, errors.New(`jwks: no "keys" array`)
	}
	ks := &keySet{byKid: make(map[string][]int)}
	for i, raw := range doc.Keys {
		var r rawJWK
		if err := json.Unmarshal(raw, &r); err != nil {
			return nil, fmt.Errorf("jwks: key %d: %v", i, err)
		}
		k, ok, err := r.parse()
		if err != nil {
			name := r.Kid
			if name == "" {
				name = fmt.Sprint(i)
			}
			return nil, fmt.Errorf("jwks: key %s: %v", name, err)
		}
		if !ok {
			continue
		}
		ks.byKid[k.kid] = append(ks.byKid[k.kid], len(ks.keys))
		ks.keys = append(ks.keys, k)
	}
	if len(ks.keys) == 0 {
		return nil, errors.New("jwks: no usable key (want oct for HS256, RSA for RS256, EC P-256 for ES256)")
	}
	return ks, nil
}

// parse returns the key, or ok false for a key this package does not use.
func (r rawJWK) parse() (k jwk, ok bool, err error) {
	if r.Use != "" && r.Use != "sig" {
		return jwk{}, false, nil
	}
	want := map[string]string{"oct": "HS256", "RSA": "RS256", "EC": "ES256"}[r.Kty]
	if want == "" || r.Kty == "EC" && r.Crv != "P-256" {
		return jwk{}, false, nil
	}
	if r.Alg != "" && r.Alg != want {
		if sameFamily(r.Kty, r.Alg) {
			return jwk{}, false, nil // meant for an algorithm of its type that is not accepted here
		}
		return jwk{}, false, fmt.Errorf("alg %q does not fit kty %q (want %s)", r.Alg, r.Kty, want)
	}
	switch r.Kty {
	case "oct":
		b, err := b64(r.K, "k")
		if err != nil {
			return jwk{}, false, err
		}
		if len(b) < 32 {
			return jwk{}, false, fmt.Errorf("oct key of %d bytes: HS256 needs at least 32", len(b))
		}
		k.key = b
	case "RSA":
		nb, err := b64(r.N, "n")
		if err != nil {
			return jwk{}, false, err
		}
		eb, err := b64(r.E, "e")
		if err != nil {
			return jwk{}, false, err
		}
		n := new(big.Int).SetBytes(nb)
		if n.BitLen() < 2048 {
			return jwk{}, false, fmt.Errorf("RSA key of %d bits: at least 2048 needed", n.BitLen())
		}
		if len(eb) > 4 {
			return jwk{}, false, errors.New("RSA exponent too large")
		}
		e := 0
		for _, c := range eb {
			e = e<<8 | int(c)
		}
		if e < 3 || e%2 == 0 {
			return jwk{}, false, fmt.Errorf("RSA exponent %d invalid", e)
		}
		k.key = &rsa.PublicKey{N: n, E: e}
	case "EC":
		xb, err := b64(r.X, "x")
		if err != nil {
			return jwk{}, false, err
		}
		yb, err := b64(r.Y, "y")
		if err != nil {
			return jwk{}, false, err
		}
		if len(xb) != 32 || len(yb) != 32 {
			return jwk{}, false, errors.New("EC P-256 coordinates must be 32 bytes each")
		}
		// Parsing the uncompressed point checks that it is on the curve.
		pt := append(append([]byte{4}, xb...), yb...)
		pub, err := ecdsa.ParseUncompressedPublicKey(elliptic.P256(), pt)
		if err != nil {
			return jwk{}, false, fmt.Errorf("EC key: %v", err)
		}
		k.key = pub
	}
	k.kid, k.alg = r.Kid, want
	return k, true, nil
}

// b64 decodes a base64url field, with or without padding.
func b64(s, field string) ([]byte, error) {
	if s == "" {
		return nil, fmt.Errorf("missing %q", field)
	}
	b, err := base64.RawURLEncoding.DecodeString(strings.TrimRight(s, "="))
	if err != nil {
		return nil, fmt.Errorf("%q is not base64url", field)
	}
	return b, nil
}

// candidates returns the keys that may verify a token with this alg and kid: those
// with the kid, or every key when the token names none; always only keys of the
// algorithm's type, so an RSA public key can never serve as an HMAC secret.
func (ks *keySet) candidates(alg, kid string, hasKid bool) []jwk {
	var out []jwk
	if hasKid {
		for _, i := range ks.byKid[kid] {
			if ks.keys[i].alg == alg {
				out = append(out, ks.keys[i])
			}
		}
		return out
	}
	for _, k := range ks.keys {
		if k.alg == alg {
			out = append(out, k)
		}
	}
	return out
}

// sameFamily reports whether alg is an algorithm for keys of type kty (RFC 7518 §3.1).
func sameFamily(kty, alg string) bool {
	switch kty {
	case "oct":
		return strings.HasPrefix(alg, "HS")
	case "RSA":
		return strings.HasPrefix(alg, "RS") || strings.HasPrefix(alg, "PS")
	}
	return false
}
