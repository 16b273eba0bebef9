package auth

import "strings"

// BearerToken returns the token of an Authorization header value that uses
// the Bearer scheme (RFC 6750), and whether it does. The scheme name is
// case-insensitive (RFC 9110 section 11.1), so "bearer" and "BEARER" count;
// it must be followed by at least one space and a token without inner
// whitespace. Surrounding whitespace is ignored.
func BearerToken(header string) (string, bool) {
	const scheme = "bearer"
	h := strings.TrimSpace(header)
	if len(h) <= len(scheme) || !strings.EqualFold(h[:len(scheme)], scheme) {
		return "", false
	}
	rest := h[len(scheme):]
	if rest[0] != ' ' && rest[0] != '\t' {
		return "", false // another scheme that starts with "bearer"
	}
	token := strings.TrimLeft(rest, " \t")
	if token == "" || strings.ContainsAny(token, " \t") {
		return "", false
	}
	return token, true
}
