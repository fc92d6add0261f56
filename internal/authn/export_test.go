package authn

// CachedTokens returns how many JWT verdicts a's cache holds.
func CachedTokens(a *Authenticator) int {
	if a.jwt == nil {
		return 0
	}
	return a.jwt.cache.len()
}

// VerifyUncached checks tok as Authenticate does, without the cache.
func VerifyUncached(a *Authenticator, tok string) Result {
	res, _, _ := a.jwt.verify(tok, a.jwt.keys.Load())
	return res
}
