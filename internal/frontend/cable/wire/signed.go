package wire

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"time"
)

// Signed stream names are Rails' ActiveSupport::MessageVerifier messages with
// digest SHA256 and the JSON serializer, the format of Turbo's
// signed_stream_name and AnyCable's signed streams:
//
//	base64(JSON(name)) + "--" + hex(HMAC-SHA256(secret, base64 part))
//
// Rails wraps a message in a "_rails" envelope only when it is signed with a
// purpose or an expiry, which Turbo and AnyCable never do; VerifyStream still
// accepts an envelope without a purpose and unexpired, in both layouts
// (Rails 7.1+ {"data":..}, older {"message":base64(JSON)}).

// MaxSignedStreamLen bounds the signed stream names VerifyStream reads.
const MaxSignedStreamLen = 4 << 10

// ErrNoSecret is returned by VerifyStream and VerifyJID when the caller has
// no secret to verify with.
var ErrNoSecret = errors.New("no secret configured")

// Errors of VerifyStream. The caller answers reject_subscription for all.
var (
	ErrSignedMalformed = errors.New("malformed signed stream name")
	ErrBadSignature    = errors.New("bad signature")
	ErrSignedNotString = errors.New("signed value is not a stream name")
	ErrSignedPurpose   = errors.New("signed stream name has a purpose")
	ErrSignedExpired   = errors.New("signed stream name expired")
)

const digestHexLen = sha256.Size * 2

// SignStream returns the signed form of stream, byte for byte what Rails
// produces with the same secret.
func SignStream(secret []byte, stream string) string {
	data := appendJSONString(nil, stream)
	return signEncoded(secret, base64.StdEncoding.EncodeToString(data))
}

func signEncoded(secret []byte, encoded string) string {
	mac := hmac.New(sha256.New, secret)
	mac.Write([]byte(encoded))
	return encoded + "--" + hex.EncodeToString(mac.Sum(nil))
}

// VerifyStream checks a signed stream name against secret and returns the
// stream name. An empty secret fails with ErrNoSecret (anycable-go 1.6.0-rc.1
// panics there). The signature is compared in constant time, before anything
// of the message is decoded.
func VerifyStream(secret []byte, signed string) (string, error) {
	return verifyStreamAt(secret, signed, time.Now())
}

func verifyStreamAt(secret []byte, signed string, now time.Time) (string, error) {
	if len(secret) == 0 {
		return "", ErrNoSecret
	}
	if len(signed) > MaxSignedStreamLen {
		return "", ErrSignedMalformed
	}
	// The digest has a fixed length, so split there rather than at the
	// first "--": a URL-safe base64 part may itself contain "--".
	sep := len(signed) - digestHexLen - 2
	if sep < 1 || signed[sep:sep+2] != "--" {
		return "", ErrSignedMalformed
	}
	encoded, digest := signed[:sep], signed[sep+2:]
	mac := hmac.New(sha256.New, secret)
	mac.Write([]byte(encoded))
	var want [digestHexLen]byte
	hex.Encode(want[:], mac.Sum(nil))
	if !hmac.Equal(want[:], []byte(digest)) {
		return "", ErrBadSignature
	}
	data, err := base64.StdEncoding.DecodeString(encoded)
	if err != nil {
		// Verifiers built with url_safe: true (Rails 7.1+) use the URL
		// alphabet without padding.
		if data, err = base64.RawURLEncoding.DecodeString(encoded); err != nil {
			return "", ErrSignedMalformed
		}
	}
	return signedValue(data, now, true)
}

// signedValue reads the verified JSON data: a string, or an envelope
// around one (at most one level deep).
func signedValue(data []byte, now time.Time, envelopeOK bool) (string, error) {
	var v any
	if err := json.Unmarshal(data, &v); err != nil {
		return "", ErrSignedMalformed
	}
	switch v := v.(type) {
	case string:
		return v, nil
	case map[string]any:
		env, ok := v["_rails"].(map[string]any)
		if !ok || !envelopeOK {
			return "", ErrSignedNotString
		}
		if pur, ok := env["pur"]; ok && pur != nil {
			return "", ErrSignedPurpose
		}
		if exp, ok := env["exp"]; ok && exp != nil {
			s, _ := exp.(string)
			t, err := time.Parse(time.RFC3339Nano, s)
			if err != nil {
				return "", ErrSignedMalformed
			}
			if !now.Before(t) {
				return "", ErrSignedExpired
			}
		}
		if d, ok := env["data"]; ok {
			if s, ok := d.(string); ok {
				return s, nil
			}
			return "", ErrSignedNotString
		}
		msg, ok := env["message"].(string)
		if !ok {
			return "", ErrSignedMalformed
		}
		inner, err := base64.StdEncoding.DecodeString(msg)
		if err != nil {
			return "", ErrSignedMalformed
		}
		return signedValue(inner, now, false)
	}
	return "", ErrSignedNotString
}
