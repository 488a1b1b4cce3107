// Package config reads specforge's YAML configuration and applies --set key=value overrides to it.
// Unknown keys are errors that name the key, so a misspelt setting never goes unnoticed.
package config

import (
	"bytes"
	"fmt"
	"os"
	"strings"

	"gopkg.in/yaml.v3"
)

// Load decodes the YAML file at path (empty for none) into v after applying overrides of the form
// "a.b.c=value" (value read as YAML: numbers, booleans, lists [1, 2], strings).
func Load(path string, overrides []string, v any) error {
	var root yaml.Node
	if path != "" {
		raw, err := os.ReadFile(path)
		if err != nil {
			return fmt.Errorf("read config: %w", err)
		}
		if err := yaml.Unmarshal(raw, &root); err != nil {
			return fmt.Errorf("%s: %v", path, err)
		}
	}
	if root.Kind == 0 {
		root = yaml.Node{Kind: yaml.DocumentNode, Content: []*yaml.Node{{Kind: yaml.MappingNode, Tag: "!!map"}}}
	}
	doc := root.Content[0]
	if doc.Kind != yaml.MappingNode {
		return fmt.Errorf("%s: the configuration must be a mapping of settings", path)
	}
	for _, o := range overrides {
		if err := set(doc, o); err != nil {
			return fmt.Errorf("--set %s: %w", o, err)
		}
	}
	// Re-encode and decode strictly so that unknown keys are reported with their line.
	var buf bytes.Buffer
	enc := yaml.NewEncoder(&buf)
	if err := enc.Encode(&root); err != nil {
		return err
	}
	dec := yaml.NewDecoder(&buf)
	dec.KnownFields(true)
	if err := dec.Decode(v); err != nil {
		where := path
		if where == "" {
			where = "--set"
		}
		return fmt.Errorf("%s: %s", where, strings.ReplaceAll(err.Error(), "yaml: unmarshal errors:\n  ", ""))
	}
	return nil
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
