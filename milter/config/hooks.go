package config

import (
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"reflect"
	"slices"
	"strconv"
	"strings"

	"github.com/vouch-mail/vouch/checks/dnsname"
	"github.com/vouch-mail/vouch/milter/policy"
	"github.com/vouch-mail/vouch/milter/socket"
	"go.yaml.in/yaml/v3"
)

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
