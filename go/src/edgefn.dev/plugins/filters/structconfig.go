package filters

import (
	"strings"

	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/structpb"

	"edgefn.dev/envoygo/api"
)

// struct-config and typed-struct-config test how the host wraps a JSON config in the Any.
// struct-config accepts only type.googleapis.com/google.protobuf.Struct (an empty Any
// included in the rejection); typed-struct-config accepts only
// type.googleapis.com/xds.type.v3.TypedStruct and reads its value field. Both require a
// string "greeting" and add response headers x-greeting: <greeting> and x-config-keys:
// <top-level keys, sorted, comma separated>. typed-struct-config also returns the
// TypedStruct's own type_url in x-typed-struct-type-url when it is not empty.

const (
	structConfigName      = "struct-config"
	typedStructConfigName = "typed-struct-config"
)

type greetingConfig struct {
	greeting     string
	keys         string
	innerTypeURL string
}

func parseGreeting(plugin string, s *structpb.Struct) (*greetingConfig, error) {
	top := newFields(plugin, s)
	greeting, err := top.requiredString("greeting")
	if err != nil {
		return nil, err
	}
	return &greetingConfig{greeting: greeting, keys: strings.Join(top.sortedKeys(), ",")}, nil
}

type structConfigParser struct {
	childWins
}

func (structConfigParser) Parse(config *anypb.Any, _ api.ConfigCallbackHandler) (interface{}, error) {
	s, err := decodeStrictStruct(structConfigName, config)
	if err != nil {
		return nil, err
	}
	return parseGreeting(structConfigName, s)
}

type typedStructConfigParser struct {
	childWins
}

func (typedStructConfigParser) Parse(config *anypb.Any, _ api.ConfigCallbackHandler) (interface{}, error) {
	typeURL, s, err := decodeTypedStruct(typedStructConfigName, config)
	if err != nil {
		return nil, err
	}
	parsed, err := parseGreeting(typedStructConfigName, s)
	if err != nil {
		return nil, err
	}
	parsed.innerTypeURL = typeURL
	return parsed, nil
}

type greetingFilter struct {
	api.PassThroughStreamFilter
	config *greetingConfig
}

func (f *greetingFilter) EncodeHeaders(header api.ResponseHeaderMap, _ bool) api.StatusType {
	header.Set("x-greeting", f.config.greeting)
	header.Set("x-config-keys", f.config.keys)
	if f.config.innerTypeURL != "" {
		header.Set("x-typed-struct-type-url", f.config.innerTypeURL)
	}
	return api.Continue
}

func greetingFactory(config interface{}, _ api.FilterCallbackHandler) api.StreamFilter {
	return &greetingFilter{config: config.(*greetingConfig)}
}
