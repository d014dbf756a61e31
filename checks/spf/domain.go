package spf

import "github.com/vouch-mail/vouch/checks/dnsname"

// validDomain reports whether d can be an SPF identity's domain: a
// multi-label name of letters, digits, '-' and '_', labels of 1 to 63
// octets, at most 253 octets, and a top label that is not all digits (so
// an IP address is not a domain). One trailing dot is allowed.
//
// RFC 7208 §4.3 makes a malformed or single-label domain "none" without a
// lookup; the character set is stricter than DNS needs, because names
// outside it (8-bit, spaces, control characters, address literals) cannot
// hold an SPF record a sender relies on, and sending them to DNS only
// spends queries on client-chosen bytes. U-labels (SMTPUTF8) are in that
// set too: they would need converting to A-labels first.
func validDomain(d string) bool { return dnsname.Valid(d, dnsname.Identity) }
