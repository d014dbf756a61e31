package envelope

import "testing"

func TestIsNullAndDisplay(t *testing.T) {
	tests := []struct {
		in      string
		null    bool
		display string
	}{
		{"", true, "<>"},
		{"<>", true, "<>"},
		{" <> ", true, "<>"},
		{"<alice@example.com>", false, "alice@example.com"},
		{"alice@example.com", false, "alice@example.com"},
		{"<postmaster>", false, "postmaster"},
		{"<@relay.example:alice@example.com>", false, "alice@example.com"},
		{"<", false, "<"},
	}
	for _, tc := range tests {
		t.Run(tc.in, func(t *testing.T) {
			if got := IsNull(tc.in); got != tc.null {
				t.Errorf("IsNull(%q) = %v, want %v", tc.in, got, tc.null)
			}
			if got := Display(tc.in); got != tc.display {
				t.Errorf("Display(%q) = %q, want %q", tc.in, got, tc.display)
			}
		})
	}
}

func TestSplit(t *testing.T) {
	tests := []struct {
		in            string
		local, domain string
		ok            bool
	}{
		{"alice@example.com", "alice", "example.com", true},
		{"<alice@example.com>", "alice", "example.com", true},
		{"<alice@Example.COM.>", "alice", "Example.COM", true},
		{"<@a.example,@b.example:alice@example.com>", "alice", "example.com", true},
		{`"a@b"@example.com`, `"a@b"`, "example.com", true},
		{`<"a\"@b"@example.com>`, `"a\"@b"`, "example.com", true},
		{`"a@b"`, "", "", false},            // quoted local part, no domain
		{`"a@b`, "", "", false},             // never closes
		{`"a"b@example.com`, "", "", false}, // text after the quoted string
		{"a@b@example.com", "a@b", "example.com", true},
		{`"a"@b@example.com`, "", "", false},
		{"alice@example.com..", "alice", "example.com", true},
		{"@example.com", "", "example.com", true},
		{"alice@", "", "", false},
		{"alice@.", "", "", false},
		{"alice", "", "", false},
		{"", "", "", false},
		{"<>", "", "", false},
		{"user@[192.0.2.1]", "user", "[192.0.2.1]", true},
	}
	for _, tc := range tests {
		t.Run(tc.in, func(t *testing.T) {
			l, d, ok := Split(tc.in)
			if l != tc.local || d != tc.domain || ok != tc.ok {
				t.Errorf("Split(%q) = %q, %q, %v; want %q, %q, %v", tc.in, l, d, ok, tc.local, tc.domain, tc.ok)
			}
			if got := Domain(tc.in); got != tc.domain {
				t.Errorf("Domain(%q) = %q, want %q", tc.in, got, tc.domain)
			}
		})
	}
}

func TestParseSRS(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want SRS
		ok   bool
	}{
		{"srs0", "SRS0=HHH=TT=orig.example=alice@forwarder.example",
			SRS{Forwarder: "forwarder.example", OrigDomain: "orig.example", OrigLocal: "alice", Hash: "HHH", Timestamp: "TT"}, true},
		{"srs0 postsrsd", "<SRS0=vmyz=3Q=example.com=bob@fwd.example.net>",
			SRS{Forwarder: "fwd.example.net", OrigDomain: "example.com", OrigLocal: "bob", Hash: "vmyz", Timestamp: "3Q"}, true},
		{"srs0 lower-case tag", "srs0=abcd=ZZ=orig.example=alice@fwd.example",
			SRS{Forwarder: "fwd.example", OrigDomain: "orig.example", OrigLocal: "alice", Hash: "abcd", Timestamp: "ZZ"}, true},
		{"srs0 plus separator", "SRS0+ab/c=ZZ=orig.example=alice@fwd.example",
			SRS{Forwarder: "fwd.example", OrigDomain: "orig.example", OrigLocal: "alice", Hash: "ab/c", Timestamp: "ZZ"}, true},
		{"srs0 minus separator", "SRS0-abcd=ZZ=orig.example=alice@fwd.example",
			SRS{Forwarder: "fwd.example", OrigDomain: "orig.example", OrigLocal: "alice", Hash: "abcd", Timestamp: "ZZ"}, true},
		{"srs0 local part with =", "SRS0=abcd=ZZ=orig.example=a=b@fwd.example",
			SRS{Forwarder: "fwd.example", OrigDomain: "orig.example", OrigLocal: "a=b", Hash: "abcd", Timestamp: "ZZ"}, true},
		{"srs1", "SRS1=XXX=first.example==HHH=TT=orig.example=alice@second.example",
			SRS{Forwarder: "second.example", FirstForwarder: "first.example", OrigDomain: "orig.example", OrigLocal: "alice", Hash: "HHH", Timestamp: "TT"}, true},
		{"srs1 with the first hop's + kept", "srs1+XXX=first.example=+HHH=TT=orig.example=alice@second.example.",
			SRS{Forwarder: "second.example", FirstForwarder: "first.example", OrigDomain: "orig.example", OrigLocal: "alice", Hash: "HHH", Timestamp: "TT"}, true},
		{"plain address", "alice@example.com", SRS{}, false},
		{"null sender", "<>", SRS{}, false},
		{"srs0 without the forwarder domain", "SRS0=HHH=TT=orig.example=alice", SRS{}, false},
		{"srs0 missing local", "SRS0=HHH=TT=orig.example=@fwd.example", SRS{}, false},
		{"srs0 missing parts", "SRS0=HHH=TT@fwd.example", SRS{}, false},
		{"srs0 timestamp too long", "SRS0=HHH=TTT=orig.example=alice@fwd.example", SRS{}, false},
		{"srs0 bad domain", "SRS0=HHH=TT=orig..example=alice@fwd.example", SRS{}, false},
		{"srs0 empty hash", "SRS0==TT=orig.example=alice@fwd.example", SRS{}, false},
		{"srs0 wrong separator", "SRS0_HHH=TT=orig.example=alice@fwd.example", SRS{}, false},
		{"srs2", "SRS2=HHH=TT=orig.example=alice@fwd.example", SRS{}, false},
		{"srs1 without the second separator", "SRS1=XXX=first.example=HHH=TT=orig.example=alice@second.example", SRS{}, false},
		{"quoted local part", `"SRS0=HHH=TT=orig.example=alice"@fwd.example`, SRS{}, false},
		{"srs1 bad first forwarder", "SRS1=XXX=first example==HHH=TT=orig.example=alice@second.example", SRS{}, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, ok := ParseSRS(tc.in)
			if ok != tc.ok || got != tc.want {
				t.Errorf("ParseSRS(%q) = %+v, %v; want %+v, %v", tc.in, got, ok, tc.want, tc.ok)
			}
		})
	}
}
