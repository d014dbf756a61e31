package received

import (
	"net/netip"
	"testing"
)

const benchField = ` from mail.sender.example (mail.sender.example [192.0.2.10])
	(using TLSv1.3 with cipher TLS_AES_128_GCM_SHA256 (128/128 bits)
	 key-exchange X25519 server-signature ECDSA (prime256v1) server-digest SHA256)
	(No client certificate requested)
	by relay.example.org (Postfix) with ESMTPS id 5260D985C16
	for <alice@example.org>; Tue,  1 Dec 2026 21:40:43 +0000 (UTC)`

// BenchmarkParse: one Postfix field with a TLS comment, the longest
// common shape.
func BenchmarkParse(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Parse(benchField); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkFindOriginMaxHops: the worst walk, MaxHops trusted fields.
func BenchmarkFindOriginMaxHops(b *testing.B) {
	fields := make([]string, MaxHops+1)
	for i := range fields {
		fields[i] = benchField
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := FindOrigin(fields, func(netip.Addr) bool { return true }); err == nil {
			b.Fatal("want ErrTooMany")
		}
	}
}
