package config

import (
	"fmt"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// The raw* structs mirror the YAML file. Their fields are the leaf types
// below, which remember the line they came from, so that validation can
// point at the exact line. The decoder walks yaml.Node itself (rather than
// yaml.Node.Decode) so that it can report every unknown key and every bad
// value in one run instead of stopping at the first.

// pos records whether a mapping was present and the line of its key. A
// struct's field of this type, tagged `yaml:"-"`, is filled by the decoder.
type pos struct {
	Line int
	Set  bool
}

// leaf is a scalar (or list of scalars) that decodes itself and returns a
// problem message, or "" when the value is fine.
type leaf interface {
	decode(n *yaml.Node, line int) string
}

// str is a string value. Any scalar is accepted (so that "listen: 8443"
// reaches the address check and gets a useful message).
type str struct {
	V    string
	Line int
	Set  bool
}

func (s *str) decode(n *yaml.Node, line int) string {
	s.Line = line
	if isNull(n) {
		return ""
	}
	if n.Kind != yaml.ScalarNode {
		return "want a single value, got " + kindName(n)
	}
	s.V, s.Set = n.Value, true
	return ""
}

// boolean is true or false.
type boolean struct {
	V    bool
	Line int
	Set  bool
}

func (b *boolean) decode(n *yaml.Node, line int) string {
	b.Line = line
	if isNull(n) {
		return ""
	}
	if n.Kind != yaml.ScalarNode || n.Tag != "!!bool" {
		return fmt.Sprintf("want true or false, got %s", describe(n))
	}
	v, err := strconv.ParseBool(strings.ToLower(n.Value))
	if err != nil {
		return fmt.Sprintf("want true or false, got %s", describe(n))
	}
	b.V, b.Set = v, true
	return ""
}

// integer is a whole number, such as a size in bytes.
type integer struct {
	V    int
	Line int
	Set  bool
}

func (i *integer) decode(n *yaml.Node, line int) string {
	i.Line = line
	if isNull(n) {
		return ""
	}
	var v int
	if n.Kind != yaml.ScalarNode || n.Tag != "!!int" || n.Decode(&v) != nil {
		return fmt.Sprintf("want a whole number, got %s", describe(n))
	}
	i.V, i.Set = v, true
	return ""
}

// duration is a Go duration such as "30s", "5m" or "8h". A bare number is
// refused: "60" could mean seconds or nanoseconds.
type duration struct {
	V    time.Duration
	Line int
	Set  bool
}

func (d *duration) decode(n *yaml.Node, line int) string {
	d.Line = line
	if isNull(n) {
		return ""
	}
	if n.Kind != yaml.ScalarNode {
		return "want a duration such as 30s, 5m or 8h, got " + kindName(n)
	}
	v, err := time.ParseDuration(n.Value)
	if err != nil {
		return fmt.Sprintf("%q is not a duration; write it like 30s, 5m or 8h", n.Value)
	}
	d.V, d.Set = v, true
	return ""
}

// strList is a list of strings, each with its own line. A single scalar is
// accepted as a list of one.
type strList struct {
	V    []str
	Line int
	Set  bool
}

func (l *strList) decode(n *yaml.Node, line int) string {
	l.Line = line
	if isNull(n) {
		return ""
	}
	l.Set = true
	if n.Kind == yaml.ScalarNode {
		l.V = []str{{V: n.Value, Line: line, Set: true}}
		return ""
	}
	if n.Kind != yaml.SequenceNode {
		return "want a list, got " + kindName(n)
	}
	for i, item := range n.Content {
		item = resolveAlias(item)
		if item.Kind != yaml.ScalarNode || isNull(item) {
			return fmt.Sprintf("item %d: want a single value, got %s", i+1, kindName(item))
		}
		l.V = append(l.V, str{V: item.Value, Line: item.Line, Set: true})
	}
	return ""
}

// refused is a key that must not be used; the decoder reports the message
// in the field's `refuse` tag when it is present. It exists so that an
// inline secret gets a message saying what to write instead, not just
// "unknown key".
type refused struct {
	Line int
	Set  bool
}

func (r *refused) decode(n *yaml.Node, line int) string {
	r.Line, r.Set = line, true
	return ""
}

var (
	posType   = reflect.TypeFor[pos]()
	leafType  = reflect.TypeFor[leaf]()
	refusedTy = reflect.TypeFor[refused]()
)

// decodeMapping fills the struct v (addressable) from the mapping n found at
// path ("" for the top level). Problems go to c; decoding carries on after
// each one.
func (c *checker) decodeMapping(n *yaml.Node, path string, v reflect.Value) {
	n = resolveAlias(n)
	if isNull(n) {
		return
	}
	if n.Kind != yaml.MappingNode {
		c.add(n.Line, "%s: want a mapping of keys to values, got %s", nameOf(path), kindName(n))
		return
	}
	t := v.Type()
	fields := map[string][]int{} // key → field index
	var known []string
	var add func(t reflect.Type, at []int)
	add = func(t reflect.Type, at []int) {
		for i := range t.NumField() {
			f := t.Field(i)
			idx := append(slices.Clip(at), i)
			tag := f.Tag.Get("yaml")
			switch {
			case tag == ",inline":
				// A struct of keys shared by several sections.
				add(f.Type, idx)
				continue
			case tag == "" || tag == "-":
				continue
			}
			fields[tag] = idx
			if f.Type != refusedTy {
				known = append(known, tag)
			}
		}
	}
	add(t, nil)
	seen := map[string]int{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, val := n.Content[i], resolveAlias(n.Content[i+1])
		if k.Kind != yaml.ScalarNode {
			c.add(k.Line, "%s: keys must be plain words, got %s", nameOf(path), kindName(k))
			continue
		}
		if first, dup := seen[k.Value]; dup {
			c.add(k.Line, "duplicate key %q in %s (first at line %d)", k.Value, nameOf(path), first)
			continue
		}
		seen[k.Value] = k.Line
		idx, ok := fields[k.Value]
		if !ok {
			c.add(k.Line, "unknown key %q in %s; known keys: %s", k.Value, nameOf(path), strings.Join(known, ", "))
			continue
		}
		c.decodeValue(val, k.Line, join(path, k.Value), t.FieldByIndex(idx), v.FieldByIndex(idx))
	}
}

// decodeValue decodes one value into field f (value fv) of a raw struct.
func (c *checker) decodeValue(n *yaml.Node, line int, path string, f reflect.StructField, fv reflect.Value) {
	if msg := f.Tag.Get("refuse"); msg != "" {
		fv.Set(reflect.ValueOf(refused{Line: line, Set: true}))
		c.add(line, "%s: %s", path, msg)
		return
	}
	if fv.Addr().Type().Implements(leafType) {
		if msg := fv.Addr().Interface().(leaf).decode(n, line); msg != "" {
			c.add(line, "%s: %s", path, msg)
			if c.badValue == nil {
				c.badValue = map[int]bool{}
			}
			c.badValue[line] = true
		}
		return
	}
	switch fv.Kind() {
	case reflect.Struct:
		c.decodeStruct(n, line, path, fv)
	case reflect.Slice:
		if isNull(n) {
			return
		}
		if n.Kind != yaml.SequenceNode {
			c.add(line, "%s: want a list, got %s", path, kindName(n))
			return
		}
		for i, item := range n.Content {
			item = resolveAlias(item)
			elem := reflect.New(fv.Type().Elem()).Elem()
			c.decodeStruct(item, item.Line, fmt.Sprintf("%s[%d]", path, i), elem)
			fv.Set(reflect.Append(fv, elem))
		}
	default:
		// A raw struct field of another type is a programming error.
		panic(fmt.Sprintf("config: cannot decode %s into %s", path, fv.Type()))
	}
}

// decodeStruct decodes a mapping into a raw struct and records its position
// in the struct's pos field.
func (c *checker) decodeStruct(n *yaml.Node, line int, path string, v reflect.Value) {
	for i := range v.NumField() {
		if v.Type().Field(i).Type == posType {
			v.Field(i).Set(reflect.ValueOf(pos{Line: line, Set: true}))
		}
	}
	c.decodeMapping(n, path, v)
}

func resolveAlias(n *yaml.Node) *yaml.Node {
	for n != nil && n.Kind == yaml.AliasNode && n.Alias != nil {
		n = n.Alias
	}
	return n
}

func isNull(n *yaml.Node) bool {
	return n == nil || n.Kind == 0 || (n.Kind == yaml.ScalarNode && n.Tag == "!!null")
}

func kindName(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.ScalarNode:
		return "a single value"
	}
	return "nothing"
}

// describe quotes a scalar, or names the kind of anything else.
func describe(n *yaml.Node) string {
	if n.Kind == yaml.ScalarNode {
		return strconv.Quote(n.Value)
	}
	return kindName(n)
}

func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

// nameOf names a path in a message; the top level has no path.
func nameOf(path string) string {
	if path == "" {
		return "the top level"
	}
	return path
}
