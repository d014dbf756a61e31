package headers

import "strings"

// folder lays out a header value in lines of at most maxLine characters,
// breaking only where whitespace may be.
type folder struct {
	b    strings.Builder
	line int // length of the current line so far
}

// newFolder starts a value whose first line already holds prefix
// characters (the field name, colon and space).
func newFolder(prefix int) *folder { return &folder{line: prefix} }

// text appends s to the current line unconditionally.
func (f *folder) text(s string) {
	f.b.WriteString(s)
	f.line += len(s)
}

// add appends sep and s, or sep's non-blank part, a line break and s when
// they would not fit. One character is kept in reserve on every line for
// a separator that may follow.
func (f *folder) add(sep, s string) {
	if f.b.Len() > 0 && f.line+len(sep)+len(s)+1 > maxLine {
		f.text(strings.TrimRight(sep, " "))
		f.breakLine()
		f.text(s)
		return
	}
	f.text(sep + s)
}

func (f *folder) breakLine() {
	f.b.WriteString(Fold)
	f.line = len(Fold) - 1 // the tab
}

func (f *folder) String() string { return f.b.String() }
