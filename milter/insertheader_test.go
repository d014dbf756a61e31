package milter

import (
	"bytes"
	"encoding/binary"
	"io"
	"net"
	"testing"
	"time"

	gomilter "github.com/emersion/go-milter"
)

// inserter is a go-milter backend that inserts one field at end of
// message, the library's own way.
type inserter struct {
	gomilter.NoOpMilter
	index       int
	name, value string
}

func (h inserter) Body(m *gomilter.Modifier) (gomilter.Response, error) {
	return gomilter.RespAccept, m.InsertHeader(h.index, h.name, h.value)
}

// libraryInsert returns the packet go-milter writes for InsertHeader,
// length prefix included, read off a real connection.
func libraryInsert(t *testing.T, index int, name, value string) []byte {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &gomilter.Server{
		NewMilter: func() gomilter.Milter { return inserter{index: index, name: name, value: value} },
		Actions:   gomilter.OptAddHeader | gomilter.OptChangeHeader,
	}
	go srv.Serve(ln)
	defer srv.Close()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	send := func(code byte, data []byte) {
		p := binary.BigEndian.AppendUint32(nil, uint32(len(data)+1))
		if _, err := c.Write(append(append(p, code), data...)); err != nil {
			t.Fatal(err)
		}
	}
	recv := func() []byte {
		var n [4]byte
		if _, err := io.ReadFull(c, n[:]); err != nil {
			t.Fatal(err)
		}
		body := make([]byte, binary.BigEndian.Uint32(n[:]))
		if _, err := io.ReadFull(c, body); err != nil {
			t.Fatal(err)
		}
		return append(n[:], body...)
	}
	opt := binary.BigEndian.AppendUint32(nil, 6)
	opt = binary.BigEndian.AppendUint32(opt, uint32(gomilter.OptAddHeader|gomilter.OptChangeHeader))
	opt = binary.BigEndian.AppendUint32(opt, 0)
	send('O', opt)
	recv()
	send('E', nil)
	p := recv()
	if p[4] != 'i' {
		t.Fatalf("go-milter answered %q, want an insert", p)
	}
	if a := recv(); a[4] != 'a' {
		t.Fatalf("after the insert: %q, want accept", a)
	}
	return p
}

// vouch writes the header insertions itself; the bytes must be those
// go-milter's Modifier.InsertHeader writes.
func TestInsertHeaderEncodesAsGoMilter(t *testing.T) {
	tests := []struct {
		name  string
		index int
		field string
		value string
	}{
		{"authentication-results", 0, "Authentication-Results", "mx.vouch.test;\r\n\tiprev=pass policy.iprev=192.0.2.1;\r\n\tspf=pass smtp.mailfrom=a@example.com"},
		{"received-spf", 0, "Received-SPF", "pass (mx.vouch.test: domain of a@example.com designates 192.0.2.1 as permitted sender) client-ip=192.0.2.1;"},
		{"bare cr and lf", 3, "X-Test", "a\rb\nc\r\n\r\nd\r"},
		{"8-bit and percent", 1, "X-Test", "caf\xc3\xa9 100% \xff"},
		{"empty value", 0, "X-Empty", ""},
		{"long", 0, "X-Long", string(bytes.Repeat([]byte("x\r\n\t"), 3000))},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			want := libraryInsert(t, tc.index, tc.field, tc.value)
			c := &wire{}
			c.out = append(c.out, "before"...)
			c.insertHeader(tc.index, tc.field, tc.value)
			if got := c.out[len("before"):]; !bytes.Equal(got, want) {
				t.Errorf("got  %q\nwant %q", got, want)
			}
		})
	}
}

// FuzzInsertHeader checks the encoding against go-milter's own steps
// (Modifier.InsertHeader, then packet) for any field.
func FuzzInsertHeader(f *testing.F) {
	f.Add(0, "Authentication-Results", "mx;\r\n\tiprev=pass")
	f.Add(7, "X", "a\r\r\n\n\x00b")
	f.Add(-1, "", "")
	f.Fuzz(func(t *testing.T, index int, name, value string) {
		var body bytes.Buffer
		binary.Write(&body, binary.BigEndian, uint32(index))
		body.WriteString(name + "\x00")
		body.Write(bytes.ReplaceAll([]byte(value), []byte("\r\n"), []byte("\n")))
		body.WriteString("\x00")
		want := binary.BigEndian.AppendUint32(nil, uint32(body.Len()+1))
		want = append(append(want, 'i'), body.Bytes()...)

		c := &wire{}
		c.insertHeader(index, name, value)
		if !bytes.Equal(c.out, want) {
			t.Errorf("got  %q\nwant %q", c.out, want)
		}
	})
}

// The answers vouch writes itself (see conn.send) are go-milter's packets:
// read back by go-milter's client they are the replies sent.
func TestWritePacketAsGoMilter(t *testing.T) {
	for _, r := range []*reply{respContinue, respAccept, respTempFail, respInternal,
		replyCode(550, "5.7.23", "SPF: 192.0.2.1 is not allowed to send mail from example.com, 100%% sure")} {
		c := &wire{}
		c.packet(r.code, r.data)
		want := binary.BigEndian.AppendUint32(nil, uint32(len(r.data)+1))
		want = append(append(want, r.code), r.data...)
		if !bytes.Equal(c.out, want) {
			t.Errorf("got %q, want %q", c.out, want)
		}
	}
}
