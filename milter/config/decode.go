package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"reflect"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// decoder walks the YAML node tree into a Config by the fields' yaml tags.
// It is strict (unknown and repeated keys are errors), it goes on after an
// error so that a file's every problem is reported at once, and it records
// the line of every key so that validation errors can name it too.
type decoder struct {
	file           string
	errs, warnings Errors
	lines          map[string]int
	// nodes counts the nodes visited: an alias can stand for a subtree
	// many times over, and a file of aliases of aliases ("billion
	// laughs") must not make the walk explode.
	nodes int
}

// maxNodes bounds the walk; a real configuration has a few hundred nodes.
const maxNodes = 100000

func newDecoder(file string) *decoder {
	return &decoder{file: file, lines: map[string]int{}}
}

func (d *decoder) errorf(line int, key, format string, a ...any) {
	d.errs = append(d.errs, Error{File: d.file, Line: line, Key: key, Msg: fmt.Sprintf(format, a...)})
}

// errorAt reports a validation error at the line of key, or of its
// nearest parent the file names.
func (d *decoder) errorAt(key, msg string) {
	d.errs = append(d.errs, Error{File: d.file, Line: d.lineOf(key), Key: key, Msg: msg})
}

func (d *decoder) lineOf(key string) int {
	for k := key; k != ""; {
		if l, ok := d.lines[k]; ok {
			return l
		}
		i := strings.LastIndexByte(k, '.')
		if i < 0 {
			break
		}
		k = k[:i]
	}
	return 0
}

func (es Errors) sorted() Errors {
	sort.SliceStable(es, func(i, j int) bool {
		if es[i].Line != es[j].Line {
			return es[i].Line < es[j].Line
		}
		return es[i].Key < es[j].Key
	})
	return es
}

var yamlLine = regexp.MustCompile(`^yaml: line (\d+): (.*)$`)

func (d *decoder) decode(data []byte, c *Config) {
	if len(bytes.TrimSpace(data)) == 0 {
		return
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if !errors.Is(err, io.EOF) {
			d.syntaxError(err)
		}
		return
	}
	var more yaml.Node
	if err := dec.Decode(&more); err == nil {
		d.errorf(more.Line, "", "a second YAML document: put all settings in one")
	} else if !errors.Is(err, io.EOF) {
		d.syntaxError(err)
	}
	if len(doc.Content) == 0 {
		return
	}
	d.value(doc.Content[0], reflect.ValueOf(c).Elem(), "")
}

func (d *decoder) syntaxError(err error) {
	msg := err.Error()
	if m := yamlLine.FindStringSubmatch(msg); m != nil {
		line, _ := strconv.Atoi(m[1])
		d.errorf(line, "", "%s", m[2])
		return
	}
	d.errorf(0, "", "%s", strings.TrimPrefix(msg, "yaml: "))
}

func child(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

// value decodes n into v, the field at path.
func (d *decoder) value(n *yaml.Node, v reflect.Value, path string) {
	if d.nodes++; d.nodes > maxNodes {
		if d.nodes == maxNodes+1 {
			d.errorf(n.Line, path, "the file expands to more than %d values (aliases?)", maxNodes)
		}
		return
	}
	for n.Kind == yaml.AliasNode {
		n = n.Alias
	}
	if isNull(n) && v.Kind() != reflect.Struct {
		v.SetZero() // "key: ~" or "key:" empties a list
		return
	}
	if hook, ok := hooks[v.Type()]; ok {
		val, err := hook(d, n, path)
		if err != nil {
			d.errorf(n.Line, path, "%v", err)
			return
		}
		v.Set(reflect.ValueOf(val))
		return
	}
	switch v.Kind() {
	case reflect.Struct:
		d.mapping(n, v, path)
	case reflect.Map:
		if n.Kind != yaml.MappingNode {
			d.errorf(n.Line, path, "want a mapping, not %s", describe(n))
			return
		}
		m := reflect.MakeMap(v.Type())
		for _, kv := range d.pairs(n, path) {
			p := child(path, kv[0].Value)
			d.lines[p] = kv[0].Line
			e := reflect.New(v.Type().Elem()).Elem()
			d.value(kv[1], e, p)
			m.SetMapIndex(reflect.ValueOf(kv[0].Value), e)
		}
		v.Set(m)
	case reflect.Slice:
		if n.Kind != yaml.SequenceNode {
			d.errorf(n.Line, path, "want a list, not %s", describe(n))
			return
		}
		s := reflect.MakeSlice(v.Type(), len(n.Content), len(n.Content))
		for i, e := range n.Content {
			p := child(path, strconv.Itoa(i))
			d.lines[p] = e.Line
			d.value(e, s.Index(i), p)
		}
		v.Set(s)
	default:
		d.scalar(n, v, path)
	}
}

func isNull(n *yaml.Node) bool {
	return n.Kind == yaml.ScalarNode && n.Tag == "!!null"
}

func describe(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	}
	return strconv.Quote(n.Value)
}

// mapping decodes a YAML mapping into the struct v by the fields' yaml
// tags; a field tagged ",inline" contributes its own fields.
func (d *decoder) mapping(n *yaml.Node, v reflect.Value, path string) {
	if isNull(n) {
		return // "section:" alone keeps the defaults
	}
	if n.Kind != yaml.MappingNode {
		d.errorf(n.Line, path, "want a mapping of keys, not %s", describe(n))
		return
	}
	fields := map[string]reflect.Value{}
	var names []string
	collectFields(v, fields, &names)
	seen := map[string]bool{}
	for _, kv := range d.pairs(n, path) {
		k, val := kv[0], kv[1]
		key := child(path, k.Value)
		if seen[k.Value] {
			d.errorf(k.Line, key, "given twice")
			continue
		}
		seen[k.Value] = true
		f, ok := fields[k.Value]
		if !ok {
			d.errorf(k.Line, key, "unknown key (want %s)", strings.Join(names, ", "))
			continue
		}
		d.lines[key] = k.Line
		d.value(val, f, key)
	}
}

func collectFields(v reflect.Value, fields map[string]reflect.Value, names *[]string) {
	eachKey(v, func(name string, f reflect.Value) {
		fields[name] = f
		*names = append(*names, name)
	})
}

// eachKey calls fn for each field of the struct v that is a key of the
// file, by its yaml tag, in order; the fields of a ",inline" field are
// the struct's own.
func eachKey(v reflect.Value, fn func(name string, f reflect.Value)) {
	t := v.Type()
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		name, opts, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		switch {
		case name == "-" || !f.IsExported():
		case opts == "inline":
			eachKey(v.Field(i), fn)
		case name != "":
			fn(name, v.Field(i))
		}
	}
}

// pairs lists a mapping's key/value nodes, with YAML merge keys ("<<:
// *defaults") expanded; the mapping's own keys win over merged ones.
func (d *decoder) pairs(n *yaml.Node, path string) [][2]*yaml.Node {
	var own, merged [][2]*yaml.Node
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		if k.Kind == yaml.ScalarNode && k.Tag == "!!merge" {
			for v.Kind == yaml.AliasNode {
				v = v.Alias
			}
			srcs := []*yaml.Node{v}
			if v.Kind == yaml.SequenceNode {
				srcs = v.Content
			}
			for _, src := range srcs {
				for src.Kind == yaml.AliasNode {
					src = src.Alias
				}
				if src.Kind != yaml.MappingNode {
					d.errorf(k.Line, path, "a merge (<<) needs a mapping")
					continue
				}
				if d.nodes += len(src.Content); d.nodes > maxNodes {
					continue
				}
				merged = append(merged, d.pairs(src, path)...)
			}
			continue
		}
		if k.Kind != yaml.ScalarNode {
			d.errorf(k.Line, path, "a key must be a plain name")
			continue
		}
		own = append(own, [2]*yaml.Node{k, v})
	}
	if len(merged) == 0 {
		return own
	}
	mine := map[string]bool{}
	for _, kv := range own {
		mine[kv[0].Value] = true
	}
	out := own
	added := map[string]bool{}
	for _, kv := range merged {
		if !mine[kv[0].Value] && !added[kv[0].Value] {
			added[kv[0].Value] = true
			out = append(out, kv)
		}
	}
	return out
}

// scalar decodes the plain types: bool, numbers, strings, durations.
func (d *decoder) scalar(n *yaml.Node, v reflect.Value, path string) {
	want := kindWords(v.Type())
	if n.Kind != yaml.ScalarNode {
		d.errorf(n.Line, path, "want %s, not %s", want, describe(n))
		return
	}
	if v.Type() == durationType {
		dur, err := time.ParseDuration(n.Value)
		if err != nil {
			d.errorf(n.Line, path, "want %s, not %q", want, n.Value)
			return
		}
		v.SetInt(int64(dur))
		return
	}
	if v.Kind() == reflect.String {
		v.SetString(n.Value)
		return
	}
	p := reflect.New(v.Type())
	if err := n.Decode(p.Interface()); err != nil {
		d.errorf(n.Line, path, "want %s, not %q", want, n.Value)
		return
	}
	v.Set(p.Elem())
}

var durationType = reflect.TypeOf(time.Duration(0))

func kindWords(t reflect.Type) string {
	if t == durationType {
		return "a duration with a unit (30s, 5m, 1h)"
	}
	switch t.Kind() {
	case reflect.Bool:
		return "true or false"
	case reflect.Int, reflect.Int64, reflect.Int32:
		return "a whole number"
	case reflect.Uint, reflect.Uint64, reflect.Uint32:
		return "a whole number, 0 or more"
	case reflect.String:
		return "a string"
	}
	return t.String()
}

// Set decodes value into the setting at key (dotted, as in the file), as
// if the file said so; flags that override the file go through it. name
// stands for the file in errors.
func (c *Config) Set(name, key, value string) error {
	parts := strings.Split(key, ".")
	leaf := &yaml.Node{Kind: yaml.ScalarNode, Value: value}
	n := leaf
	for i := len(parts) - 1; i >= 0; i-- {
		n = &yaml.Node{Kind: yaml.MappingNode, Content: []*yaml.Node{{Kind: yaml.ScalarNode, Value: parts[i]}, n}}
	}
	d := newDecoder(name)
	d.value(n, reflect.ValueOf(c).Elem(), "")
	if len(d.errs) > 0 {
		return d.errs
	}
	return nil
}
