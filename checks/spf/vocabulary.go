package spf

// Verdicts lists every SPF result, in RFC 7208 §2.6 order; the policy
// table and the metric label values are built from it.
var Verdicts = []Verdict{Pass, Fail, SoftFail, Neutral, None, TempError, PermError}

// DefaultOptions are the RFC 7208 §4.6.4 limits, as the embedded
// configuration gives them.
func DefaultOptions() Options {
	return Options{LookupLimit: DefaultLookupLimit, VoidLookupLimit: DefaultVoidLookupLimit}
}
