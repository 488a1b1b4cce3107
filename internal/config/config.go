// Package config reads specforge's YAML configuration and applies --set key=value overrides to it.
// Unknown keys and values of the wrong type are errors that name the key and its line, so a misspelt
// setting never goes unnoticed.
package config

import (
	"fmt"
	"io"
	"os"
	"reflect"
	"strings"

	"gopkg.in/yaml.v3"
)

// maxConfigBytes bounds a configuration file: a run's settings fit in a few KiB, and yaml.v3 builds the
// whole node tree in memory, so a multi-gigabyte "config" would only exhaust memory.
const maxConfigBytes = 1 << 20

// Source says where each setting of a loaded configuration came from, so that a value that fails
// validation is reported at its line.
type Source struct {
	path  string
	lines map[string]int // dotted key -> line in path; 0: from --set
}

// Where names the origin of a dotted key: "run.yaml:12", "--set" or "the defaults".
func (s Source) Where(key string) string {
	line, ok := s.lines[key]
	switch {
	case !ok:
		return "the defaults"
	case line == 0:
		return "--set"
	}
	return fmt.Sprintf("%s:%d", s.path, line)
}

// Load decodes the YAML file at path (empty for none) into v after applying overrides of the form
// "a.b.c=value" (value read as YAML: numbers, booleans, lists [1, 2], strings).
func Load(path string, overrides []string, v any) error {
	_, err := load(path, overrides, v)
	return err
}

func load(path string, overrides []string, v any) (Source, error) {
	src := Source{path: path, lines: map[string]int{}}
	var root yaml.Node
	if path != "" {
		raw, err := readConfig(path)
		if err != nil {
			return src, err
		}
		if err := yaml.Unmarshal(raw, &root); err != nil {
			return src, fmt.Errorf("%s: %v", path, err)
		}
	}
	if root.Kind == 0 {
		root = yaml.Node{Kind: yaml.DocumentNode, Content: []*yaml.Node{{Kind: yaml.MappingNode, Tag: "!!map"}}}
	}
	doc := root.Content[0]
	if doc.Kind != yaml.MappingNode {
		return src, fmt.Errorf("%s: the configuration must be a mapping of settings", path)
	}
	for _, o := range overrides {
		if err := set(doc, o); err != nil {
			return src, fmt.Errorf("--set %s: %w", o, err)
		}
	}
	if err := src.check(doc, reflect.TypeOf(v).Elem(), ""); err != nil {
		return src, err
	}
	if err := doc.Decode(v); err != nil {
		return src, fmt.Errorf("%s: %s", path, strings.ReplaceAll(err.Error(), "yaml: unmarshal errors:\n  ", ""))
	}
	return src, nil
}

func readConfig(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("read config: %w", err)
	}
	defer f.Close()
	raw, err := io.ReadAll(io.LimitReader(f, maxConfigBytes+1))
	if err != nil {
		return nil, fmt.Errorf("read config: %w", err)
	}
	if len(raw) > maxConfigBytes {
		return nil, fmt.Errorf("%s: a configuration file is limited to %d bytes", path, maxConfigBytes)
	}
	return raw, nil
}

// check walks a mapping node against the struct type it decodes into: every key must be a field, and
// every leaf value must decode into its field's type. It records each key's line. Doing this on the
// parsed tree (rather than re-encoding it for a strict decoder) keeps the user's own line numbers.
func (s Source) check(n *yaml.Node, t reflect.Type, prefix string) error {
	for n.Kind == yaml.AliasNode {
		n = n.Alias
	}
	if n.Kind != yaml.MappingNode {
		what := prefix
		if what == "" {
			what = "the configuration"
		}
		return fmt.Errorf("%s: %s must be a mapping of settings", s.at(n), what)
	}
	fields := map[string]reflect.StructField{}
	var known []string
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		if name == "" || name == "-" {
			continue
		}
		fields[name] = f
		known = append(known, name)
	}
	seen := map[string]bool{}
	for k := 0; k+1 < len(n.Content); k += 2 {
		key, val := n.Content[k], n.Content[k+1]
		dotted := key.Value
		if prefix != "" {
			dotted = prefix + "." + key.Value
		}
		f, ok := fields[key.Value]
		if !ok {
			return fmt.Errorf("%s: unknown setting %q (the settings here are %s)", s.at(key), dotted, strings.Join(known, ", "))
		}
		if seen[key.Value] {
			return fmt.Errorf("%s: %s is set twice", s.at(key), dotted)
		}
		seen[key.Value] = true
		s.lines[dotted] = key.Line
		if f.Type.Kind() == reflect.Struct && !reflect.PointerTo(f.Type).Implements(unmarshalerType) {
			if err := s.check(val, f.Type, dotted); err != nil {
				return err
			}
			continue
		}
		if err := val.Decode(reflect.New(f.Type).Interface()); err != nil {
			msg := strings.ReplaceAll(err.Error(), "yaml: unmarshal errors:\n  ", "")
			if _, rest, ok := strings.Cut(msg, ": "); ok && strings.HasPrefix(msg, "line ") {
				msg = rest
			}
			return fmt.Errorf("%s: %s: %s", s.at(key), dotted, msg)
		}
	}
	return nil
}

var unmarshalerType = reflect.TypeFor[yaml.Unmarshaler]()

// at names a node's position: the file and line, or --set for a node an override made.
func (s Source) at(n *yaml.Node) string {
	if n.Line == 0 {
		return "--set"
	}
	return fmt.Sprintf("%s:%d", s.path, n.Line)
}

// set applies one key=value override to a mapping node.
func set(doc *yaml.Node, override string) error {
	key, value, ok := strings.Cut(override, "=")
	if !ok || key == "" {
		return fmt.Errorf("want key=value")
	}
	var val yaml.Node
	if err := yaml.Unmarshal([]byte(value), &val); err != nil {
		return fmt.Errorf("value %q: %v", value, err)
	}
	newValue := &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!null", Value: ""}
	if val.Kind == yaml.DocumentNode && len(val.Content) == 1 {
		newValue = val.Content[0]
	}
	node := doc
	parts := strings.Split(key, ".")
	for i, part := range parts {
		if node.Kind != yaml.MappingNode {
			return fmt.Errorf("%s is not a section", strings.Join(parts[:i], "."))
		}
		var child *yaml.Node
		for k := 0; k+1 < len(node.Content); k += 2 {
			if node.Content[k].Value == part {
				child = node.Content[k+1]
				if i == len(parts)-1 {
					node.Content[k+1] = newValue
				}
				break
			}
		}
		if i == len(parts)-1 {
			if child == nil {
				node.Content = append(node.Content, &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: part}, newValue)
			}
			return nil
		}
		if child == nil {
			child = &yaml.Node{Kind: yaml.MappingNode, Tag: "!!map"}
			node.Content = append(node.Content, &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: part}, child)
		}
		node = child
	}
	return nil
}
