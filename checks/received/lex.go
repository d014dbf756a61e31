package received

import (
	"fmt"
	"strings"
)

type itemKind int

const (
	word      itemKind = iota // an atom, domain, address literal, path or quoted string
	comment                   // an RFC 5322 comment; text is its content, nested comments included
	semicolon                 // the ';' before the date
)

type item struct {
	kind itemKind
	text string
}

func (it item) isWord(w string) bool { return it.kind == word && strings.EqualFold(it.text, w) }

// isKeyword reports whether a word is one of the clause keywords, which
// cannot stand for a domain.
func (it item) isKeyword() bool {
	return it.kind == word && (strings.EqualFold(it.text, "from") || strings.EqualFold(it.text, "by") || keywordIndex(it.text) >= 0)
}

// maxItems bounds the words and comments of one field; real ones have
// fewer than 30.
const maxItems = 200

// lex splits a field value into words, comments and semicolons. Line
// breaks count as white space (the milter hands over folded values with
// bare LFs); other control characters, an unbalanced ')' or an
// unterminated comment, quoted string, path or literal are errors,
// wherever they are, the date included: a HELO cannot open a comment
// that swallows the rest of the field.
func lex(s string) ([]item, error) {
	for i := 0; i < len(s); i++ {
		if c := s[i]; (c < ' ' && c != '\t' && c != '\r' && c != '\n') || c == 0x7f {
			return nil, fmt.Errorf("%w: control character %#x at %d", ErrSyntax, c, i)
		}
	}
	var items []item
	i := 0
	for {
		for i < len(s) && isWSP(s[i]) {
			i++
		}
		if i == len(s) {
			return items, nil
		}
		if len(items) == maxItems {
			return nil, fmt.Errorf("%w: more than %d words and comments", ErrSyntax, maxItems)
		}
		switch s[i] {
		case ';':
			items = append(items, item{semicolon, ";"})
			i++
		case ')':
			return nil, fmt.Errorf("%w: unbalanced ')' at %d", ErrSyntax, i)
		case '(':
			end, err := commentEnd(s, i)
			if err != nil {
				return nil, err
			}
			items = append(items, item{comment, s[i+1 : end]})
			i = end + 1
		default:
			end, err := wordEnd(s, i)
			if err != nil {
				return nil, err
			}
			items = append(items, item{word, s[i:end]})
			i = end
		}
	}
}

func isWSP(c byte) bool { return c == ' ' || c == '\t' || c == '\r' || c == '\n' }

// commentEnd returns the index of the ')' closing the comment opened at
// s[start], honouring nesting and quoted-pairs (RFC 5322 §3.2.2).
func commentEnd(s string, start int) (int, error) {
	depth := 0
	for i := start; i < len(s); i++ {
		switch s[i] {
		case '\\':
			i++
		case '(':
			depth++
		case ')':
			depth--
			if depth == 0 {
				return i, nil
			}
		}
	}
	return 0, fmt.Errorf("%w: unterminated comment at %d", ErrSyntax, start)
}

// wordEnd returns the end of the word starting at s[start]: it runs to
// white space, '(' or ';', except inside a quoted string, an angle path
// or an address literal, which must be closed.
func wordEnd(s string, start int) (int, error) {
	i := start
	for i < len(s) {
		switch c := s[i]; {
		case isWSP(c) || c == '(' || c == ';':
			return i, nil
		case c == ')':
			return 0, fmt.Errorf("%w: unbalanced ')' at %d", ErrSyntax, i)
		case c == '"':
			end, err := quotedEnd(s, i)
			if err != nil {
				return 0, err
			}
			i = end + 1
		case c == '<' || c == '[':
			closer := byte('>')
			if c == '[' {
				closer = ']'
			}
			j := i + 1
			for j < len(s) && s[j] != closer {
				switch s[j] {
				case '"':
					end, err := quotedEnd(s, j)
					if err != nil {
						return 0, err
					}
					j = end
				case '\\':
					j++
				case ' ', '\t', '\r', '\n', '(', ')', '<', '[':
					return 0, fmt.Errorf("%w: %q inside %q at %d", ErrSyntax, s[j], c, j)
				}
				j++
			}
			if j >= len(s) {
				return 0, fmt.Errorf("%w: unterminated %q at %d", ErrSyntax, c, i)
			}
			i = j + 1
		default:
			i++
		}
	}
	return i, nil
}

// quotedEnd returns the index of the '"' closing the quoted string opened
// at s[start].
func quotedEnd(s string, start int) (int, error) {
	for i := start + 1; i < len(s); i++ {
		switch s[i] {
		case '\\':
			i++
		case '"':
			return i, nil
		}
	}
	return 0, fmt.Errorf("%w: unterminated quoted string at %d", ErrSyntax, start)
}
