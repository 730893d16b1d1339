// Package filters holds edgefn's test plugins, written against edgefn.dev/envoygo. Main
// packages under edgefn.dev/plugins register them into plugin libraries.
package filters

import (
	"fmt"
	"sort"
	"strings"

	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/structpb"

	"edgefn.dev/envoygo/api"
)

const (
	structTypeURL      = "type.googleapis.com/google.protobuf.Struct"
	typedStructTypeURL = "type.googleapis.com/xds.type.v3.TypedStruct"
)

// decodeStruct decodes a plugin_config Any holding a google.protobuf.Struct. An empty Any
// (no plugin_config at all) reads as an empty object.
func decodeStruct(plugin string, config *anypb.Any) (*structpb.Struct, error) {
	if config.GetTypeUrl() == "" && len(config.GetValue()) == 0 {
		return &structpb.Struct{}, nil
	}
	return decodeStrictStruct(plugin, config)
}

// decodeStrictStruct is decodeStruct without the empty-Any exception.
func decodeStrictStruct(plugin string, config *anypb.Any) (*structpb.Struct, error) {
	if config.GetTypeUrl() != structTypeURL {
		return nil, fmt.Errorf("%s: plugin_config must be an Any with type URL %q, got type URL %q",
			plugin, structTypeURL, config.GetTypeUrl())
	}
	var value structpb.Struct
	if err := proto.Unmarshal(config.GetValue(), &value); err != nil {
		return nil, fmt.Errorf("%s: plugin_config value is not a valid google.protobuf.Struct: %v", plugin, err)
	}
	return &value, nil
}

// decodeTypedStruct decodes a plugin_config Any holding an xds.type.v3.TypedStruct and
// returns its type_url and value. No Go type for TypedStruct exists here, because the
// cncf/xds module is not available offline. So this parses the wire format by hand with
// protowire. Field 1 is type_url (string) and field 2 is value (google.protobuf.Struct).
// Any other field is skipped, as proto3 requires.
func decodeTypedStruct(plugin string, config *anypb.Any) (string, *structpb.Struct, error) {
	if config.GetTypeUrl() != typedStructTypeURL {
		return "", nil, fmt.Errorf("%s: plugin_config must be an Any with type URL %q, got type URL %q",
			plugin, typedStructTypeURL, config.GetTypeUrl())
	}

	invalid := func(reason string) error {
		return fmt.Errorf("%s: plugin_config value is not a valid xds.type.v3.TypedStruct: %s", plugin, reason)
	}

	var typeURL string
	value := &structpb.Struct{}
	data := config.GetValue()
	for len(data) > 0 {
		number, wireType, n := protowire.ConsumeTag(data)
		if n < 0 {
			return "", nil, invalid(protowire.ParseError(n).Error())
		}
		data = data[n:]

		switch {
		case number == 1 && wireType == protowire.BytesType:
			text, m := protowire.ConsumeString(data)
			if m < 0 {
				return "", nil, invalid("field 1 (type_url): " + protowire.ParseError(m).Error())
			}
			typeURL = text
			n = m
		case number == 2 && wireType == protowire.BytesType:
			raw, m := protowire.ConsumeBytes(data)
			if m < 0 {
				return "", nil, invalid("field 2 (value): " + protowire.ParseError(m).Error())
			}
			// A repeated embedded message merges into the earlier one, as in proto3.
			if err := (proto.UnmarshalOptions{Merge: true}).Unmarshal(raw, value); err != nil {
				return "", nil, invalid("field 2 (value): " + err.Error())
			}
			n = m
		default:
			n = protowire.ConsumeFieldValue(number, wireType, data)
			if n < 0 {
				return "", nil, invalid(fmt.Sprintf("field %d: %v", number, protowire.ParseError(n)))
			}
		}
		data = data[n:]
	}
	return typeURL, value, nil
}

// fields reads typed values out of a config object and names the field in every error.
type fields struct {
	plugin string
	path   string // dotted prefix for nested objects, "" at the top
	values map[string]*structpb.Value
}

func newFields(plugin string, s *structpb.Struct) fields {
	return fields{plugin: plugin, values: s.GetFields()}
}

func (f fields) name(key string) string {
	return f.path + key
}

func (f fields) typeError(key, expected string, got *structpb.Value) error {
	return fmt.Errorf("%s: config field %q must be %s, got %s",
		f.plugin, f.name(key), expected, kindName(got))
}

func (f fields) missing(key, expected string) error {
	return fmt.Errorf("%s: config field %q is required and must be %s", f.plugin, f.name(key), expected)
}

func kindName(v *structpb.Value) string {
	switch v.GetKind().(type) {
	case *structpb.Value_NullValue:
		return "null"
	case *structpb.Value_NumberValue:
		return "a number"
	case *structpb.Value_StringValue:
		return "a string"
	case *structpb.Value_BoolValue:
		return "a boolean"
	case *structpb.Value_StructValue:
		return "an object"
	case *structpb.Value_ListValue:
		return "a list"
	}
	return "an empty value"
}

// onlyKeys rejects keys outside allowed, so a misspelt field fails at config load.
func (f fields) onlyKeys(allowed ...string) error {
	for key := range f.values {
		known := false
		for _, a := range allowed {
			known = known || key == a
		}
		if !known {
			return fmt.Errorf("%s: unknown config field %q; expected one of: %s",
				f.plugin, f.name(key), strings.Join(allowed, ", "))
		}
	}
	return nil
}

// sortedKeys returns the top-level keys in byte order.
func (f fields) sortedKeys() []string {
	keys := make([]string, 0, len(f.values))
	for key := range f.values {
		keys = append(keys, key)
	}
	sort.Strings(keys)
	return keys
}

// optionalString returns the string at key and whether it was present.
func (f fields) optionalString(key string) (string, bool, error) {
	v, ok := f.values[key]
	if !ok {
		return "", false, nil
	}
	s, isString := v.GetKind().(*structpb.Value_StringValue)
	if !isString {
		return "", false, f.typeError(key, "a string", v)
	}
	return s.StringValue, true, nil
}

func (f fields) requiredString(key string) (string, error) {
	s, ok, err := f.optionalString(key)
	if err != nil {
		return "", err
	}
	if !ok {
		return "", f.missing(key, "a string")
	}
	return s, nil
}

func (f fields) requiredNonEmptyString(key string) (string, error) {
	s, err := f.requiredString(key)
	if err != nil {
		return "", err
	}
	if s == "" {
		return "", fmt.Errorf("%s: config field %q must not be empty", f.plugin, f.name(key))
	}
	return s, nil
}

// requiredChoice reads a string that must be one of choices.
func (f fields) requiredChoice(key string, choices ...string) (string, error) {
	s, err := f.requiredString(key)
	if err != nil {
		return "", err
	}
	for _, c := range choices {
		if s == c {
			return s, nil
		}
	}
	return "", fmt.Errorf("%s: config field %q must be one of %s, got %q",
		f.plugin, f.name(key), strings.Join(choices, ", "), s)
}

func (f fields) optionalBool(key string, fallback bool) (bool, error) {
	v, ok := f.values[key]
	if !ok {
		return fallback, nil
	}
	b, isBool := v.GetKind().(*structpb.Value_BoolValue)
	if !isBool {
		return false, f.typeError(key, "a boolean", v)
	}
	return b.BoolValue, nil
}

// optionalInt reads a whole number in [min, max]; JSON numbers arrive as doubles.
func (f fields) optionalInt(key string, fallback, min, max int64) (int64, error) {
	v, ok := f.values[key]
	if !ok {
		return fallback, nil
	}
	n, isNumber := v.GetKind().(*structpb.Value_NumberValue)
	if !isNumber {
		return 0, f.typeError(key, "a number", v)
	}
	whole := int64(n.NumberValue)
	if float64(whole) != n.NumberValue || whole < min || whole > max {
		return 0, fmt.Errorf("%s: config field %q must be a whole number from %d to %d, got %v",
			f.plugin, f.name(key), min, max, n.NumberValue)
	}
	return whole, nil
}

// optionalObject returns the nested object at key and whether it was present.
func (f fields) optionalObject(key string) (fields, bool, error) {
	v, ok := f.values[key]
	if !ok {
		return fields{}, false, nil
	}
	s, isObject := v.GetKind().(*structpb.Value_StructValue)
	if !isObject {
		return fields{}, false, f.typeError(key, "an object", v)
	}
	nested := fields{plugin: f.plugin, path: f.name(key) + ".", values: s.StructValue.GetFields()}
	return nested, true, nil
}

// noConfigParser accepts an empty Any or an empty Struct, for plugins without settings.
type noConfigParser struct {
	plugin string
}

func (p noConfigParser) Parse(config *anypb.Any, _ api.ConfigCallbackHandler) (interface{}, error) {
	s, err := decodeStruct(p.plugin, config)
	if err != nil {
		return nil, err
	}
	if keys := newFields(p.plugin, s).sortedKeys(); len(keys) > 0 {
		return nil, fmt.Errorf("%s: the plugin takes no config fields, got %s",
			p.plugin, strings.Join(keys, ", "))
	}
	return struct{}{}, nil
}

func (noConfigParser) Merge(_, child interface{}) interface{} {
	return child
}

// childWins is the Merge of every test plugin: the more specific config replaces the other.
type childWins struct{}

func (childWins) Merge(_, child interface{}) interface{} {
	return child
}
