package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"reflect"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/vouch-mail/vouch/checks/dnsname"
	"github.com/vouch-mail/vouch/milter/policy"
	"github.com/vouch-mail/vouch/milter/socket"
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

// hooks decode the domain types the configuration holds, each from its
// one parser.
var hooks = map[reflect.Type]func(d *decoder, n *yaml.Node, path string) (any, error){
	reflect.TypeOf(socket.Address{}): scalarHook(func(s string) (any, error) { return socket.Parse(s) }),
	reflect.TypeOf(os.FileMode(0)):   scalarHook(func(s string) (any, error) { return parseMode(s) }),
	reflect.TypeOf(policy.Action(0)): scalarHook(func(s string) (any, error) { return policy.ParseAction(s) }),
	reflect.TypeOf(policy.Stage("")): scalarHook(func(s string) (any, error) {
		if !slices.Contains(policy.DecideStages, policy.Stage(s)) {
			return nil, fmt.Errorf("must be rcpt, mail or helo, not %q", s)
		}
		return policy.Stage(s), nil
	}),
	reflect.TypeOf(policy.Check("")): scalarHook(func(s string) (any, error) {
		if c := policy.Check(s); c == DryRunAll || slices.Contains(policy.Checks, c) {
			return c, nil
		}
		return nil, fmt.Errorf("unknown check %q (want iprev, helo, spf, spf_helo or all)", s)
	}),
	reflect.TypeOf(slog.Level(0)): scalarHook(func(s string) (any, error) {
		var l slog.Level
		if err := l.UnmarshalText([]byte(s)); err != nil {
			return nil, fmt.Errorf("want debug, info, warn or error, not %q", s)
		}
		return l, nil
	}),
	reflect.TypeOf(netip.Prefix{}): func(d *decoder, n *yaml.Node, path string) (any, error) {
		if n.Kind != yaml.ScalarNode {
			return nil, fmt.Errorf("want a network, not %s", describe(n))
		}
		p, hostBits, err := parsePrefix(n.Value)
		if hostBits {
			d.warnings = append(d.warnings, Error{File: d.file, Line: n.Line, Key: path,
				Msg: fmt.Sprintf("%s has host bits set: it means %s", n.Value, p)})
		}
		return p, err
	},
	reflect.TypeOf(policy.Domains{}): func(d *decoder, n *yaml.Node, path string) (any, error) {
		if n.Kind != yaml.SequenceNode {
			return nil, fmt.Errorf("want a list of domains, not %s", describe(n))
		}
		out := policy.Domains{}
		for i, e := range n.Content {
			p := child(path, strconv.Itoa(i))
			d.lines[p] = e.Line
			name, err := parseDomainEntry(e.Value)
			if e.Kind != yaml.ScalarNode || err != nil {
				d.errorf(e.Line, p, "want a domain (example.com) or a suffix (.example.com), not %s", describe(e))
				continue
			}
			out = append(out, name)
		}
		return out, nil
	},
	reflect.TypeOf(policy.Table{}): decodeRules,
}

func scalarHook(parse func(string) (any, error)) func(*decoder, *yaml.Node, string) (any, error) {
	return func(_ *decoder, n *yaml.Node, _ string) (any, error) {
		if n.Kind != yaml.ScalarNode {
			return nil, fmt.Errorf("want a single value, not %s", describe(n))
		}
		return parse(n.Value)
	}
}

func parseMode(s string) (os.FileMode, error) {
	m, err := strconv.ParseUint(strings.TrimPrefix(s, "0o"), 8, 32)
	if err != nil || m > 0o777 {
		return 0, fmt.Errorf("want an octal file mode such as \"0660\", not %q", s)
	}
	return os.FileMode(m), nil
}

// parsePrefix reads a network or a single address. hostBits reports a
// network written with host bits set (10.1.2.3/8), which Postfix warns
// about too: it is taken as the network it names.
func parsePrefix(s string) (p netip.Prefix, hostBits bool, err error) {
	if p, err := netip.ParsePrefix(s); err == nil {
		return p.Masked(), p.Masked() != p, nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil || a.Zone() != "" {
		return netip.Prefix{}, false, fmt.Errorf("want a CIDR network (192.0.2.0/24, 2001:db8::/32) or an address, not %q", s)
	}
	return netip.PrefixFrom(a, a.BitLen()), false, nil
}

// parseDomainEntry reads an allowlist entry: a domain, or a suffix with a
// leading dot. It is lower-cased, without a trailing dot.
func parseDomainEntry(s string) (string, error) {
	name := strings.TrimPrefix(s, ".")
	if !dnsname.Valid(name, dnsname.Rules{Underscore: true, TrailingDot: true}) || !strings.Contains(name, ".") && !strings.HasPrefix(s, ".") {
		return "", errors.New("not a domain")
	}
	return strings.ToLower(strings.TrimSuffix(s, ".")), nil
}

// decodeRules reads policy.rules: check -> result -> rule, where a rule is
// an action ("fail: reject") or a mapping {action, code, status, text}
// whose missing parts come from the preset's reply for that action.
func decodeRules(d *decoder, n *yaml.Node, path string) (any, error) {
	if n.Kind != yaml.MappingNode {
		return nil, fmt.Errorf("want a mapping of checks, not %s", describe(n))
	}
	t := policy.Table{}
	for _, ck := range d.pairs(n, path) {
		cpath := child(path, ck[0].Value)
		d.lines[cpath] = ck[0].Line
		check := policy.Check(ck[0].Value)
		known, ok := policy.Results[check]
		if !ok {
			d.errorf(ck[0].Line, cpath, "unknown check %q (want iprev, helo, spf or spf_helo)", check)
			continue
		}
		cells := ck[1]
		for cells.Kind == yaml.AliasNode {
			cells = cells.Alias
		}
		if cells.Kind != yaml.MappingNode {
			d.errorf(cells.Line, cpath, "want a mapping of results, not %s", describe(cells))
			continue
		}
		for _, rk := range d.pairs(cells, cpath) {
			rpath := child(cpath, rk[0].Value)
			d.lines[rpath] = rk[0].Line
			result := policy.Result(rk[0].Value)
			if !slices.Contains(known, result) {
				d.errorf(rk[0].Line, rpath, "unknown result %q for %s (want one of %s)", result, check, joinResults(known))
				continue
			}
			rule, err := d.rule(rk[1], check, result, rpath)
			if err != nil {
				d.errorf(rk[0].Line, rpath, "%v", err)
				continue
			}
			t.Set(check, result, rule)
		}
	}
	return t, nil
}

func joinResults(rs []policy.Result) string {
	s := make([]string, len(rs))
	for i, r := range rs {
		s[i] = string(r)
	}
	return strings.Join(s, ", ")
}

func (d *decoder) rule(n *yaml.Node, check policy.Check, result policy.Result, path string) (policy.Rule, error) {
	for n.Kind == yaml.AliasNode {
		n = n.Alias
	}
	var spec struct {
		Action, Status, Text string
		Code                 int
	}
	switch n.Kind {
	case yaml.ScalarNode:
		spec.Action = n.Value
	case yaml.MappingNode:
		for _, kv := range d.pairs(n, path) {
			k, v := kv[0].Value, kv[1]
			if v.Kind != yaml.ScalarNode {
				return policy.Rule{}, fmt.Errorf("%s: want a single value, not %s", k, describe(v))
			}
			switch k {
			case "action":
				spec.Action = v.Value
			case "status":
				spec.Status = v.Value
			case "text":
				spec.Text = v.Value
			case "code":
				c, err := strconv.Atoi(v.Value)
				if err != nil {
					return policy.Rule{}, fmt.Errorf("code: want a reply code such as 550, not %q", v.Value)
				}
				spec.Code = c
			default:
				return policy.Rule{}, fmt.Errorf("unknown key %s in a policy rule (want action, code, status, text)", k)
			}
		}
	default:
		return policy.Rule{}, fmt.Errorf("want an action or a mapping {action, code, status, text}, not %s", describe(n))
	}
	action, err := policy.ParseAction(spec.Action)
	if err != nil {
		return policy.Rule{}, err
	}
	rule := policy.DefaultRule(check, result, action)
	if action == policy.Accept || action == policy.Quarantine {
		if spec.Code != 0 || spec.Status != "" || spec.Text != "" {
			return rule, fmt.Errorf("%s sends no reply: code, status and text do not apply", action)
		}
		return rule, nil
	}
	if spec.Code != 0 {
		rule.Code = spec.Code
		if spec.Status == "" {
			// Keep the class in step with the code.
			rule.Status = strconv.Itoa(spec.Code/100) + rule.Status[1:]
		}
	}
	if spec.Status != "" {
		rule.Status = spec.Status
	}
	if spec.Text != "" {
		rule.Text = spec.Text
	}
	return rule, rule.Validate()
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
