package filters

import (
	"encoding/json"
	"strconv"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/structpb"

	"edgefn.dev/envoygo/api"
)

// structBytes serializes a JSON object as google.protobuf.Struct.
func structBytes(t *testing.T, jsonText string) []byte {
	t.Helper()
	var object map[string]interface{}
	if err := json.Unmarshal([]byte(jsonText), &object); err != nil {
		t.Fatalf("invalid test JSON %s: %v", jsonText, err)
	}
	s, err := structpb.NewStruct(object)
	if err != nil {
		t.Fatalf("structpb.NewStruct(%s): %v", jsonText, err)
	}
	data, err := proto.Marshal(s)
	if err != nil {
		t.Fatalf("marshal Struct: %v", err)
	}
	return data
}

func structAny(t *testing.T, jsonText string) *anypb.Any {
	return &anypb.Any{TypeUrl: structTypeURL, Value: structBytes(t, jsonText)}
}

// typedStructAny wraps a JSON object in xds.type.v3.TypedStruct{type_url, value}.
func typedStructAny(t *testing.T, innerTypeURL, jsonText string) *anypb.Any {
	var typed []byte
	typed = protowire.AppendTag(typed, 1, protowire.BytesType)
	typed = protowire.AppendString(typed, innerTypeURL)
	typed = protowire.AppendTag(typed, 2, protowire.BytesType)
	typed = protowire.AppendBytes(typed, structBytes(t, jsonText))
	return &anypb.Any{TypeUrl: typedStructTypeURL, Value: typed}
}

func parse(t *testing.T, parser api.StreamFilterConfigParser, config *anypb.Any) (interface{}, error) {
	t.Helper()
	return parser.Parse(config, nil)
}

func TestParserErrorsNameTheField(t *testing.T) {
	cases := []struct {
		name   string
		parser api.StreamFilterConfigParser
		config string
		want   string
	}{
		{"add-header wrong type", addHeaderParser{}, `{"requestHeader": "x"}`, `"requestHeader" must be an object, got a string`},
		{"add-header missing name", addHeaderParser{}, `{"responseHeader": {"value": "v"}}`, `"responseHeader.name" is required`},
		{"add-header unknown field", addHeaderParser{}, `{"requestHeaders": {}}`, `unknown config field "requestHeaders"`},
		{"require-header missing", requireHeaderParser{}, `{"body": "b"}`, `"header" is required`},
		{"body-rewrite empty from", bodyRewriteParser{}, `{"from": "", "to": "x"}`, `"from" must not be empty`},
		{"body-rewrite half pair", bodyRewriteParser{}, `{"from": "a", "to": "b", "responseTo": "c"}`, `"responseFrom" is required`},
		{"async-continue fraction", asyncContinueParser{}, `{"phase": "decodeData", "delayMs": 1.5}`, `"delayMs" must be a whole number`},
		{"async-continue phase", asyncContinueParser{}, `{"phase": "later"}`, `"phase" must be one of`},
		{"panic where", panicParser{}, `{"where": 3}`, `"where" must be a string, got a number`},
		{"local-reply crlf", localReplyParser{}, `{"phase": "decode", "crlf": "yes"}`, `"crlf" must be a boolean`},
		{"struct-config greeting", structConfigParser{}, `{"greeting": 5}`, `"greeting" must be a string, got a number`},
		{"trailers takes none", noConfigParser{plugin: trailersName}, `{"x": 1}`, `takes no config fields, got x`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := parse(t, c.parser, structAny(t, c.config))
			if err == nil {
				t.Fatalf("Parse(%s) accepted the config, expected an error containing %q", c.config, c.want)
			}
			if !strings.Contains(err.Error(), c.want) {
				t.Fatalf("Parse(%s) error %q does not contain %q", c.config, err, c.want)
			}
		})
	}
}

func TestStructConfigRejectsOtherTypeURL(t *testing.T) {
	_, err := parse(t, structConfigParser{}, typedStructAny(t, "", `{"greeting": "hi"}`))
	if err == nil || !strings.Contains(err.Error(), `got type URL "`+typedStructTypeURL+`"`) {
		t.Fatalf("struct-config with a TypedStruct: error %v, expected it to name the type URL it got", err)
	}

	_, err = parse(t, structConfigParser{}, &anypb.Any{})
	if err == nil || !strings.Contains(err.Error(), `got type URL ""`) {
		t.Fatalf("struct-config with an empty Any: error %v, expected a type URL error", err)
	}
}

func TestTypedStructConfigDecodesValue(t *testing.T) {
	parsed, err := parse(t, typedStructConfigParser{}, typedStructAny(t, "type.example/Cfg", `{"greeting": "hi", "b": 1, "a": true}`))
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	config := parsed.(*greetingConfig)
	if config.greeting != "hi" {
		t.Errorf("greeting = %q, expected hi", config.greeting)
	}
	if config.keys != "a,b,greeting" {
		t.Errorf("keys = %q, expected a,b,greeting", config.keys)
	}
	if config.innerTypeURL != "type.example/Cfg" {
		t.Errorf("inner type URL = %q, expected type.example/Cfg", config.innerTypeURL)
	}

	_, err = parse(t, typedStructConfigParser{}, structAny(t, `{"greeting": "hi"}`))
	if err == nil || !strings.Contains(err.Error(), `got type URL "`+structTypeURL+`"`) {
		t.Fatalf("typed-struct-config with a plain Struct: error %v, expected a type URL error", err)
	}

	truncated := typedStructAny(t, "", `{"greeting": "hi"}`)
	truncated.Value = truncated.Value[:len(truncated.Value)-2]
	if _, err = parse(t, typedStructConfigParser{}, truncated); err == nil {
		t.Fatal("typed-struct-config accepted a truncated TypedStruct")
	}
}

func TestAddHeaderSetsConfiguredHeaders(t *testing.T) {
	parsed, err := parse(t, addHeaderParser{}, structAny(t,
		`{"requestHeader": {"name": "X-Up", "value": "1"}, "responseHeader": {"name": "x-down", "value": "2"}}`))
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	filter := addHeaderFactory("lib")(parsed, newFakeCallbacks())

	request := newFakeHeaders(":path", "/")
	if status := filter.DecodeHeaders(request, true); status != api.Continue {
		t.Errorf("DecodeHeaders = %d, expected Continue", status)
	}
	if v, _ := request.Get("x-up"); v != "1" {
		t.Errorf("request x-up = %q, expected 1", v)
	}

	response := newFakeHeaders(":status", "200")
	filter.EncodeHeaders(response, true)
	for name, want := range map[string]string{"x-down": "2", "x-edgefn-plugin": "add-header", "x-edgefn-library": "lib"} {
		if v, _ := response.Get(name); v != want {
			t.Errorf("response %s = %q, expected %q", name, v, want)
		}
	}
}

func TestEmptyAnyIsEmptyConfig(t *testing.T) {
	parsed, err := parse(t, addHeaderParser{}, &anypb.Any{})
	if err != nil {
		t.Fatalf("add-header with no plugin_config: %v", err)
	}
	config := parsed.(*addHeaderConfig)
	if config.request != nil || config.response != nil {
		t.Errorf("add-header with no plugin_config has settings %+v", config)
	}
}

func TestBodyRewriteFixesContentLength(t *testing.T) {
	parsed, err := parse(t, bodyRewriteParser{}, structAny(t, `{"from": "cat", "to": "tiger"}`))
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	filter := bodyRewriteFactory(parsed, newFakeCallbacks())

	headers := newFakeHeaders(":path", "/", "content-length", "11")
	if status := filter.DecodeHeaders(headers, false); status != api.StopAndBuffer {
		t.Fatalf("DecodeHeaders = %d, expected StopAndBuffer", status)
	}
	body := &fakeBuffer{data: []byte("cat and cat")}
	if status := filter.DecodeData(body, true); status != api.Continue {
		t.Errorf("DecodeData = %d, expected Continue", status)
	}
	if body.String() != "tiger and tiger" {
		t.Errorf("body = %q, expected %q", body.String(), "tiger and tiger")
	}
	if v, _ := headers.Get("content-length"); v != "15" {
		t.Errorf("content-length = %q, expected 15", v)
	}

	if status := filter.DecodeHeaders(newFakeHeaders(":path", "/"), true); status != api.Continue {
		t.Errorf("DecodeHeaders with end of stream = %d, expected Continue", status)
	}
}

func TestLocalReplyHeaders(t *testing.T) {
	parsed, err := parse(t, localReplyParser{}, structAny(t, `{"phase": "encode", "crlf": true}`))
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	callbacks := newFakeCallbacks()
	filter := localReplyFactory(parsed, callbacks)

	if status := filter.DecodeHeaders(newFakeHeaders(), true); status != api.Continue {
		t.Errorf("DecodeHeaders = %d, expected Continue for phase encode", status)
	}
	if status := filter.EncodeHeaders(newFakeHeaders(), true); status != api.LocalReply {
		t.Errorf("EncodeHeaders = %d, expected LocalReply", status)
	}
	if len(callbacks.encoder.replies) != 1 {
		t.Fatalf("encoder replies = %d, expected 1", len(callbacks.encoder.replies))
	}
	reply := callbacks.encoder.replies[0]
	if reply.code != 503 || reply.body != "denied" || reply.grpcStatus != -1 || reply.details != "test" {
		t.Errorf("reply = %+v, expected 503 denied -1 test", reply)
	}
	if got := reply.headers["x-reason"]; len(got) != 1 || got[0] != "policy\r\nx-injected: 1" {
		t.Errorf("x-reason = %q, expected the CR/LF value", got)
	}
	if got := reply.headers["set-cookie"]; len(got) != 2 || got[0] != "a=1" || got[1] != "b=2" {
		t.Errorf("set-cookie = %q, expected [a=1 b=2]", got)
	}
}

func TestDestroyCounterPaths(t *testing.T) {
	callbacks := newFakeCallbacks()
	before := destroyCount.Load()

	odd := destroyCounterFactory(nil, callbacks)
	if status := odd.DecodeHeaders(newFakeHeaders(":path", "/r/7?x=2"), true); status != api.LocalReply {
		t.Errorf("path /r/7?x=2: status %d, expected LocalReply", status)
	}
	odd.OnDestroy(api.Normal)

	even := destroyCounterFactory(nil, callbacks)
	if status := even.DecodeHeaders(newFakeHeaders(":path", "/r/8?x=1"), true); status != api.Continue {
		t.Errorf("path /r/8?x=1: status %d, expected Continue", status)
	}
	even.OnDestroy(api.Terminate)

	counter := destroyCounterFactory(nil, callbacks)
	counter.DecodeHeaders(newFakeHeaders(":path", "/destroy-count"), true)
	last := callbacks.decoder.replies[len(callbacks.decoder.replies)-1]
	if last.code != 200 {
		t.Errorf("/destroy-count code = %d, expected 200", last.code)
	}
	if want := strconv.FormatInt(before+2, 10); last.body != want {
		t.Errorf("/destroy-count body = %q, expected %s", last.body, want)
	}
}

func TestAsyncContinueSetsHeaderThenContinues(t *testing.T) {
	parsed, err := parse(t, asyncContinueParser{}, structAny(t, `{"phase": "encodeHeaders", "delayMs": 0}`))
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	callbacks := newFakeCallbacks()
	filter := asyncContinueFactory(parsed, callbacks)

	response := newFakeHeaders(":status", "200")
	if status := filter.EncodeHeaders(response, false); status != api.Running {
		t.Fatalf("EncodeHeaders = %d, expected Running", status)
	}
	select {
	case <-callbacks.encoder.done:
	case <-time.After(5 * time.Second):
		t.Fatal("the goroutine did not call Continue within 5s")
	}
	if v, _ := response.Get("x-async"); v != "done" {
		t.Errorf("x-async = %q, expected done", v)
	}
	if len(callbacks.encoder.continued) != 1 || callbacks.encoder.continued[0] != api.Continue {
		t.Errorf("continued with %v, expected one Continue", callbacks.encoder.continued)
	}
}

func TestAllNamesAreUnique(t *testing.T) {
	seen := map[string]bool{}
	for _, p := range All("lib") {
		if seen[p.Name] {
			t.Errorf("plugin name %q registered twice", p.Name)
		}
		seen[p.Name] = true
	}
	if len(seen) != 15 {
		t.Errorf("%d plugins, expected 15", len(seen))
	}
}
