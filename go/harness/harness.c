// A minimal stand-in for Envoy's golang filter host: it defines the 34 host callbacks
// (each logs its call), dlopens a Go plugin library, creates configs from hand-encoded
// google.protobuf.Any bytes and runs a few requests through the exported entry points.
// It prints every call and checks the call order the Go side must produce.
//
// Usage: harness PATH/testplugins.so   (exit status 0 when every check passes)

#include <dlfcn.h>
#include <pthread.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../src/edgefn.dev/envoygo/http/api.h"

typedef struct {
  const char* p;
  ptrdiff_t n;
} GoStr;

typedef uint64_t GoUint64;

// === call log ===

static pthread_mutex_t log_mutex = PTHREAD_MUTEX_INITIALIZER;
static char calls[256][160];
static int call_count;
static int log_level_calls;
static int passes;
static int failures;

static void record(const char* format, ...) {
  char line[160];
  va_list args;
  va_start(args, format);
  vsnprintf(line, sizeof line, format, args);
  va_end(args);

  pthread_mutex_lock(&log_mutex);
  printf("  host <- %s\n", line);
  fflush(stdout);
  if (call_count < 256) {
    snprintf(calls[call_count++], sizeof calls[0], "%s", line);
  }
  pthread_mutex_unlock(&log_mutex);
}

static void check(bool ok, const char* description) {
  printf("%s: %s\n", ok ? "PASS" : "FAIL", description);
  if (ok) {
    passes++;
  } else {
    failures++;
  }
}

// Returns the index of the first call at or after `from` that starts with prefix, or -1.
static int find_call(int from, const char* prefix) {
  pthread_mutex_lock(&log_mutex);
  int found = -1;
  for (int i = from; i < call_count && found < 0; i++) {
    if (strncmp(calls[i], prefix, strlen(prefix)) == 0) {
      found = i;
    }
  }
  pthread_mutex_unlock(&log_mutex);
  return found;
}

// === per-stream header table served to CopyHeaders and GetHeader ===

typedef struct {
  const char* key;
  const char* value;
} Header;

typedef struct {
  Header items[8];
  int count;
} HeaderTable;

static HeaderTable decode_headers, encode_headers;
static HeaderTable decode_trailers, encode_trailers;

static HeaderTable* table_for(void* s) {
  return ((processState*)s)->is_encoding ? &encode_headers : &decode_headers;
}

static HeaderTable* trailers_for(void* s) {
  return ((processState*)s)->is_encoding ? &encode_trailers : &decode_trailers;
}

// The one body chunk served to GetBuffer/DrainBuffer/SetBufferHelper, whatever the handle.
static char body[1024];
static size_t body_len;

static uint64_t table_bytes(const HeaderTable* t) {
  uint64_t total = 0;
  for (int i = 0; i < t->count; i++) {
    total += strlen(t->items[i].key) + strlen(t->items[i].value);
  }
  return total;
}

// === the 34 host callbacks ===

CAPIStatus envoyGoFilterHttpContinue(void* s, int status) {
  record("Continue s=%p status=%d", s, status);
  return CAPIOK;
}

CAPIStatus envoyGoFilterHttpSendLocalReply(void* s, int code, void* body, int body_len,
                                           void* headers, int headers_num, long long grpc,
                                           void* details, int details_len) {
  record("SendLocalReply s=%p code=%d body=%.*s headers_num=%d grpc=%lld details=%.*s", s, code,
         body_len, (const char*)body, headers_num, grpc, details_len, (const char*)details);
  const GoStr* strs = headers;
  for (int i = 0; i + 1 < headers_num; i += 2) {
    record("  reply header %.*s=%.*s", (int)strs[i].n, strs[i].p, (int)strs[i + 1].n,
           strs[i + 1].p);
  }
  return CAPIOK;
}

CAPIStatus envoyGoFilterHttpSendPanicReply(void* s, void* details, int len) {
  record("SendPanicReply s=%p details=%.*s", s, len > 60 ? 60 : len, (const char*)details);
  return CAPIOK;
}

CAPIStatus envoyGoFilterHttpAddData(void* s, void* data, int len, bool streaming) {
  record("AddData s=%p len=%d streaming=%d", s, len, streaming);
  return CAPIOK;
}

CAPIStatus envoyGoFilterHttpInjectData(void* s, void* data, int len) {
  record("InjectData s=%p len=%d", s, len);
  return CAPIOK;
}

CAPIStatus envoyGoFilterHttpSetUpstreamOverrideHost(void* s, void* host, int len, bool strict) {
  record("SetUpstreamOverrideHost s=%p host=%.*s strict=%d", s, len, (const char*)host, strict);
  return CAPIOK;
}

CAPIStatus envoyGoFilterHttpGetHeader(void* s, void* key, int key_len, uint64_t* value_data,
                                      int* value_len) {
  record("GetHeader s=%p key=%.*s", s, key_len, (const char*)key);
  const HeaderTable* t = table_for(s);
  for (int i = 0; i < t->count; i++) {
    if ((int)strlen(t->items[i].key) == key_len && memcmp(t->items[i].key, key, key_len) == 0) {
      *value_data = (uint64_t)(uintptr_t)t->items[i].value;
      *value_len = (int)strlen(t->items[i].value);
      break;
    }
  }
  return CAPIOK;
}

// Fills `strs` (key, value, ... as GoStr) and copies the bytes into `buf`. Key pointers
// always point into buf; empty values keep p untouched.
static void copy_table(const HeaderTable* t, void* strs, void* buf) {
  GoStr* out = strs;
  char* cursor = buf;
  for (int i = 0; i < t->count; i++) {
    size_t key_len = strlen(t->items[i].key);
    size_t value_len = strlen(t->items[i].value);
    memcpy(cursor, t->items[i].key, key_len);
    out[2 * i] = (GoStr){cursor, (ptrdiff_t)key_len};
    cursor += key_len;
    if (value_len > 0) {
      memcpy(cursor, t->items[i].value, value_len);
      out[2 * i + 1] = (GoStr){cursor, (ptrdiff_t)value_len};
      cursor += value_len;
    }
  }
}

CAPIStatus envoyGoFilterHttpCopyHeaders(void* s, void* strs, void* buf) {
  const HeaderTable* t = table_for(s);
  record("CopyHeaders s=%p count=%d bytes=%llu", s, t->count,
         (unsigned long long)table_bytes(t));
  copy_table(t, strs, buf);
  return CAPIOK;
}

CAPIStatus envoyGoFilterHttpSetHeaderHelper(void* s, void* key, int key_len, void* value,
                                            int value_len, headerAction act) {
  record("SetHeaderHelper s=%p %.*s=%.*s action=%s", s, key_len, (const char*)key, value_len,
         (const char*)value, act == HeaderAdd ? "add" : "set");
  return CAPIOK;
}

CAPIStatus envoyGoFilterHttpRemoveHeader(void* s, void* key, int key_len) {
  record("RemoveHeader s=%p key=%.*s", s, key_len, (const char*)key);
  return CAPIOK;
}

CAPIStatus envoyGoFilterHttpGetBuffer(void* s, uint64_t buffer, void* out) {
  record("GetBuffer s=%p buffer=%llu", s, (unsigned long long)buffer);
  memcpy(out, body, body_len);
  return CAPIOK;
}

CAPIStatus envoyGoFilterHttpDrainBuffer(void* s, uint64_t buffer, uint64_t length) {
  record("DrainBuffer s=%p length=%llu", s, (unsigned long long)length);
  memmove(body, body + length, body_len - length);
  body_len -= length;
  return CAPIOK;
}

CAPIStatus envoyGoFilterHttpSetBufferHelper(void* s, uint64_t buffer, void* data, int len,
                                            bufferAction act) {
  record("SetBufferHelper s=%p %.*s action=%d", s, len, (const char*)data, act);
  if (act == Set) {
    body_len = 0;
  }
  if (act == Prepend) {
    memmove(body + len, body, body_len);
    memcpy(body, data, len);
  } else {
    memcpy(body + body_len, data, len);
  }
  body_len += len;
  return CAPIOK;
}

CAPIStatus envoyGoFilterHttpCopyTrailers(void* s, void* strs, void* buf) {
  const HeaderTable* t = trailers_for(s);
  record("CopyTrailers s=%p count=%d bytes=%llu", s, t->count,
         (unsigned long long)table_bytes(t));
  copy_table(t, strs, buf);
  return CAPIOK;
}

CAPIStatus envoyGoFilterHttpSetTrailer(void* s, void* key, int key_len, void* value,
                                       int value_len, headerAction act) {
  record("SetTrailer s=%p %.*s=%.*s", s, key_len, (const char*)key, value_len,
         (const char*)value);
  return CAPIOK;
}

CAPIStatus envoyGoFilterHttpRemoveTrailer(void* s, void* key, int key_len) {
  record("RemoveTrailer s=%p key=%.*s", s, key_len, (const char*)key);
  return CAPIOK;
}

CAPIStatus envoyGoFilterHttpClearRouteCache(void* r, bool refresh) {
  record("ClearRouteCache r=%p refresh=%d", r, refresh);
  return CAPIOK;
}

// Route name (1) and downstream remote address (8) are set; the other never-NotFound ids
// (2, 7) are empty; every other id is not found.
CAPIStatus envoyGoFilterHttpGetStringValue(void* r, int id, uint64_t* data, int* len) {
  record("GetStringValue r=%p id=%d", r, id);
  const char* value = "";
  if (id == 1) {
    value = "route-a";
  } else if (id == 8) {
    value = "127.0.0.1:5555";
  } else if (id != 2 && id != 7) {
    return CAPIValueNotFound;
  }
  *data = (uint64_t)(uintptr_t)value;
  *len = (int)strlen(value);
  return CAPIOK;
}

// Protocol (3) is HTTP/1.1 and the attempt count (6) is 1; other ids are not found.
CAPIStatus envoyGoFilterHttpGetIntegerValue(void* r, int id, uint64_t* value) {
  record("GetIntegerValue r=%p id=%d", r, id);
  if (id != 3 && id != 6) {
    return CAPIValueNotFound;
  }
  *value = 1;
  return CAPIOK;
}

CAPIStatus envoyGoFilterHttpGetDynamicMetadata(void* r, void* name, int name_len, uint64_t* data,
                                               int* len) {
  record("GetDynamicMetadata r=%p", r);
  return CAPIOK;
}

CAPIStatus envoyGoFilterHttpSetDynamicMetadata(void* r, void* name, int name_len, void* key,
                                               int key_len, void* buf, int buf_len) {
  record("SetDynamicMetadata r=%p", r);
  return CAPIOK;
}

CAPIStatus envoyGoFilterHttpSetStringFilterState(void* r, void* key, int key_len, void* value,
                                                 int value_len, int state_type, int life_span,
                                                 int stream_sharing) {
  record("SetStringFilterState r=%p", r);
  return CAPIOK;
}

CAPIStatus envoyGoFilterHttpGetStringFilterState(void* r, void* key, int key_len, uint64_t* data,
                                                 int* len) {
  record("GetStringFilterState r=%p", r);
  return CAPIOK;
}

CAPIStatus envoyGoFilterHttpGetStringProperty(void* r, void* key, int key_len, uint64_t* data,
                                              int* len, int* rc) {
  record("GetStringProperty r=%p", r);
  return CAPIValueNotFound;
}

CAPIStatus envoyGoFilterHttpGetStringSecret(void* r, void* key, int key_len, uint64_t* data,
                                            int* len) {
  record("GetStringSecret r=%p", r);
  *len = -1;
  return CAPIOK;
}

CAPIStatus envoyGoFilterHttpSetDrainConnectionUponCompletion(void* r) {
  record("SetDrainConnectionUponCompletion r=%p", r);
  return CAPIOK;
}

void envoyGoFilterHttpFinalize(void* r, int reason) {
  record("HttpFinalize r=%p reason=%d", r, reason);
}

void envoyGoConfigHttpFinalize(void* c) { record("ConfigHttpFinalize c=%p", c); }

CAPIStatus envoyGoFilterHttpDefineMetric(void* c, uint32_t type, void* name, int name_len,
                                         uint32_t* id) {
  record("DefineMetric c=%p type=%u", c, type);
  *id = 4;
  return CAPIOK;
}

CAPIStatus envoyGoFilterHttpIncrementMetric(void* c, uint32_t id, int64_t offset) {
  record("IncrementMetric c=%p", c);
  return CAPIOK;
}

CAPIStatus envoyGoFilterHttpGetMetric(void* c, uint32_t id, uint64_t* value) {
  record("GetMetric c=%p", c);
  return CAPIOK;
}

CAPIStatus envoyGoFilterHttpRecordMetric(void* c, uint32_t id, uint64_t value) {
  record("RecordMetric c=%p", c);
  return CAPIOK;
}

void envoyGoFilterLog(uint32_t level, void* message, int len) {
  record("Log level=%u %.*s", level, len > 90 ? 90 : len, (const char*)message);
}

uint32_t envoyGoFilterLogLevel(void) {
  pthread_mutex_lock(&log_mutex);
  log_level_calls++;
  pthread_mutex_unlock(&log_mutex);
  return 0; // trace: every message passes Go's level check
}

// === hand-encoded protobuf: Any{Struct} ===

typedef struct {
  uint8_t data[512];
  size_t len;
} Bytes;

static void put_byte(Bytes* b, uint8_t v) { b->data[b->len++] = v; }

static void put_varint(Bytes* b, uint64_t v) {
  while (v >= 0x80) {
    put_byte(b, (uint8_t)(v | 0x80));
    v >>= 7;
  }
  put_byte(b, (uint8_t)v);
}

// Appends a length-delimited field (wire type 2).
static void put_field(Bytes* b, int number, const void* data, size_t len) {
  put_varint(b, (uint64_t)number << 3 | 2);
  put_varint(b, len);
  memcpy(b->data + b->len, data, len);
  b->len += len;
}

// Appends one google.protobuf.Struct fields entry whose Value is a string (Value field 3)
// or a nested Struct (Value field 5).
static void put_struct_entry(Bytes* s, const char* key, int value_field, const void* value,
                             size_t value_len) {
  Bytes v = {0}, entry = {0};
  put_field(&v, value_field, value, value_len);
  put_field(&entry, 1, key, strlen(key));
  put_field(&entry, 2, v.data, v.len);
  put_field(s, 1, entry.data, entry.len);
}

static void wrap_any(Bytes* any, const Bytes* st) {
  const char* url = "type.googleapis.com/google.protobuf.Struct";
  put_field(any, 1, url, strlen(url));
  put_field(any, 2, st->data, st->len);
}

// === driving the plugin ===

typedef GoUint64 (*new_config_fn)(httpConfig*);
typedef GoUint64 (*on_header_fn)(processState*, GoUint64, GoUint64, GoUint64);
typedef void (*on_destroy_fn)(httpRequest*, GoUint64);
typedef void (*cleanup_fn)(void);

static void* must_sym(void* lib, const char* name) {
  void* sym = dlsym(lib, name);
  if (sym == NULL) {
    fprintf(stderr, "harness: %s not found in the plugin library: %s\n", name, dlerror());
    exit(2);
  }
  return sym;
}

static GoUint64 new_config(new_config_fn fn, const char* plugin, const Bytes* any,
                           httpConfig* cfg) {
  *cfg = (httpConfig){(uint64_t)(uintptr_t)plugin, strlen(plugin),
                      (uint64_t)(uintptr_t)any->data, any->len, 0, 2};
  printf("NewHttpPluginConfig(%s, %zu Any bytes)\n", plugin, any->len);
  GoUint64 id = fn(cfg);
  printf("  -> config id %llu\n", (unsigned long long)id);
  return id;
}

int main(int argc, char** argv) {
  if (argc != 2) {
    fprintf(stderr, "usage: %s PATH/testplugins.so\n", argv[0]);
    return 2;
  }

  printf("dlopen(%s)\n", argv[1]);
  void* lib = dlopen(argv[1], RTLD_NOW | RTLD_LOCAL);
  if (lib == NULL) {
    fprintf(stderr, "harness: dlopen failed: %s\n", dlerror());
    return 2;
  }
  static const char* exports[] = {
      "envoyGoFilterNewHttpPluginConfig", "envoyGoFilterMergeHttpPluginConfig",
      "envoyGoFilterDestroyHttpPluginConfig", "envoyGoFilterOnHttpHeader",
      "envoyGoFilterOnHttpData", "envoyGoFilterOnHttpLog",
      "envoyGoFilterOnHttpStreamComplete", "envoyGoFilterOnHttpDestroy",
      "envoyGoRequestSemaDec", "envoyGoFilterCleanUp"};
  for (size_t i = 0; i < sizeof exports / sizeof exports[0]; i++) {
    must_sym(lib, exports[i]);
  }
  new_config_fn new_cfg = must_sym(lib, "envoyGoFilterNewHttpPluginConfig");
  on_header_fn on_header = must_sym(lib, "envoyGoFilterOnHttpHeader");
  on_destroy_fn on_destroy = must_sym(lib, "envoyGoFilterOnHttpDestroy");
  cleanup_fn cleanup = must_sym(lib, "envoyGoFilterCleanUp");

  // add-header: {"requestHeader": {"name": "x-added", "value": "yes"}}
  Bytes inner = {0}, outer = {0}, any = {0};
  put_struct_entry(&inner, "name", 3, "x-added", 7);
  put_struct_entry(&inner, "value", 3, "yes", 3);
  put_struct_entry(&outer, "requestHeader", 5, inner.data, inner.len);
  wrap_any(&any, &outer);
  httpConfig cfg;
  GoUint64 id = new_config(new_cfg, "add-header", &any, &cfg);
  check(id > 0, "add-header config accepted");
  check(log_level_calls >= 1, "envoyGoFilterLogLevel called by package init");

  // add-header with a wrong field type: {"requestHeader": "x"}
  Bytes bad = {0}, bad_any = {0};
  put_struct_entry(&bad, "requestHeader", 3, "x", 1);
  wrap_any(&bad_any, &bad);
  httpConfig bad_cfg;
  int before = call_count;
  check(new_config(new_cfg, "add-header", &bad_any, &bad_cfg) == 0, "bad config rejected (id 0)");
  check(find_call(before, "Log level=4 failed to parse golang plugin config") >= 0,
        "rejection logged at error level with the parser's message");

  // One request: 2 request headers, then response headers.
  httpRequest req = {{"add-header", 10}, id, 1, 0};
  processState dec = {&req, 0, 1};
  processState enc = {&req, 1, 1};
  decode_headers = (HeaderTable){{{":path", "/"}, {"x-test", "1"}}, 2};
  uint64_t bytes = table_bytes(&decode_headers);
  printf("OnHttpHeader(decode, end_stream=1, headers=2, bytes=%llu)\n", (unsigned long long)bytes);
  before = call_count;
  GoUint64 status = on_header(&dec, 1, 2, bytes);
  printf("  -> status %llu\n", (unsigned long long)status);
  check(status == 2, "DecodeHeaders returned Continue (2)");
  int copy_at = find_call(before, "CopyHeaders s=");
  int set_at = find_call(before, "SetHeaderHelper s=");
  check(copy_at >= 0 && set_at > copy_at, "CopyHeaders runs before SetHeaderHelper");
  char expected[160];
  snprintf(expected, sizeof expected, "SetHeaderHelper s=%p x-added=yes action=set", (void*)&dec);
  check(find_call(before, expected) >= 0, "SetHeaderHelper(x-added=yes, set) on the decode state");

  encode_headers = (HeaderTable){{{":status", "200"}}, 1};
  printf("OnHttpHeader(encode, end_stream=1, headers=1)\n");
  before = call_count;
  status = on_header(&enc, 1, 1, table_bytes(&encode_headers));
  printf("  -> status %llu\n", (unsigned long long)status);
  check(status == 2, "EncodeHeaders returned Continue (2)");
  snprintf(expected, sizeof expected, "SetHeaderHelper s=%p x-edgefn-plugin=add-header", (void*)&enc);
  check(find_call(before, expected) >= 0, "x-edgefn-plugin set on the encode state");

  printf("OnHttpDestroy(reason=0)\n");
  on_destroy(&req, 0);

  // local-reply: {"phase": "decode"} -> SendLocalReply with GoString header pairs.
  Bytes lr = {0}, lr_any = {0};
  put_struct_entry(&lr, "phase", 3, "decode", 6);
  wrap_any(&lr_any, &lr);
  httpConfig lr_cfg;
  GoUint64 lr_id = new_config(new_cfg, "local-reply", &lr_any, &lr_cfg);
  httpRequest lr_req = {{"local-reply", 11}, lr_id, 0, 0};
  processState lr_dec = {&lr_req, 0, 1};
  decode_headers = (HeaderTable){{{":path", "/x"}}, 1};
  printf("OnHttpHeader(decode, local-reply)\n");
  before = call_count;
  status = on_header(&lr_dec, 1, 1, table_bytes(&decode_headers));
  printf("  -> status %llu\n", (unsigned long long)status);
  check(status == 1, "local-reply returned LocalReply (1)");
  int reply_at = find_call(before, "SendLocalReply s=");
  check(reply_at >= 0 && strstr(calls[reply_at], "code=403 body=denied headers_num=6") != NULL,
        "SendLocalReply(403, denied) with headers_num 6 (3 pairs)");
  check(find_call(before, "  reply header set-cookie=a=1") >= 0 &&
            find_call(before, "  reply header set-cookie=b=2") >= 0,
        "repeated set-cookie sent as two GoString pairs");
  on_destroy(&lr_req, 0);

  // StopAndBuffer with end_stream=1 (buffer-all): Go panics, calls SendPanicReply and
  // returns 0 (Running).
  httpConfig ba_cfg;
  Bytes empty_any = {0};
  GoUint64 ba_id = new_config(new_cfg, "buffer-all", &empty_any, &ba_cfg);
  httpRequest ba_req = {{"buffer-all", 10}, ba_id, 0, 0};
  processState ba_dec = {&ba_req, 0, 1};
  printf("OnHttpHeader(decode, buffer-all, end_stream=1)\n");
  before = call_count;
  status = on_header(&ba_dec, 1, 1, table_bytes(&decode_headers));
  printf("  -> status %llu\n", (unsigned long long)status);
  check(status == 0, "StopAndBuffer at end_stream returns 0 (Running)");
  check(find_call(before, "SendPanicReply") >= 0, "StopAndBuffer at end_stream sends a panic reply");
  on_destroy(&ba_req, 0);

  // Finalizers: the Go requests are unreachable now; CleanUp forces a GC.
  printf("envoyGoFilterCleanUp()\n");
  cleanup();
  snprintf(expected, sizeof expected, "HttpFinalize r=%p reason=0", (void*)&req);
  for (int i = 0; i < 100 && find_call(0, expected) < 0; i++) {
    usleep(20000); // finalizers run on their own goroutine; wait up to 2 s
  }
  check(find_call(0, expected) >= 0, "request finalizer calls envoyGoFilterHttpFinalize(r, 0)");

  printf("%d passed, %d failed\n", passes, failures);
  return failures == 0 ? 0 : 1;
}
